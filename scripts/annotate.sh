#!/usr/bin/env bash
# Set up everything on a fresh machine and open napari with the MaskCLIP Annotator docked and sample
# images loaded. Usage: bash scripts/annotate.sh [IMAGE_FOLDER_OR_PROJECT]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
exec .venv/bin/python -m maskclip_napari "$@"
