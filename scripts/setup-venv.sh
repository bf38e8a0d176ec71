#!/usr/bin/env bash
# Create the project's virtual environment at .venv (if missing) and install maskclip-napari into it with
# napari/PyQt5 and the test tools. Re-running is cheap: nothing is reinstalled unless the package metadata
# or the pinned versions changed. Usage: bash scripts/setup-venv.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($python --version)"
    "$python" -m venv .venv
fi

stamp=.venv/.maskclip-installed
wanted=$(cat setup.cfg pyproject.toml requirements/ci-constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    exit 0
fi
echo "setup: installing maskclip-napari and its dependencies into .venv (first time: a few minutes)"
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, at the pinned versions (requirements/ci-constraints.txt): a plain 'torch' would pull a
# multi-GB build of whatever is newest.
.venv/bin/python -m pip install --quiet -c requirements/ci-constraints.txt torch torchvision
.venv/bin/python -m pip install --quiet -c requirements/ci-constraints.txt -e ".[all,dev]"
echo "$wanted" > "$stamp"
