#!/usr/bin/env bash
# Set up everything on a fresh machine and run the test suite (GUI tests run on a virtual display).
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-packages.sh
bash scripts/setup-venv.sh
exec .venv/bin/python -m pytest "$@"
