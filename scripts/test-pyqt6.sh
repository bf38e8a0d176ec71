#!/usr/bin/env bash
# The napari GUI smoke tests on PyQt6 (napari deprecates PyQt5; PyQt5 stays the default here): PyQt6 is
# installed into .venv beside PyQt5 and selected with QT_API=pyqt6. Run after scripts/test.sh (which sets up
# .venv and the system packages). Usage: bash scripts/test-pyqt6.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-packages.sh
bash scripts/setup-venv.sh
.venv/bin/python -m pip install --quiet -r requirements/gui-pyqt6.txt
export QT_API=pyqt6
.venv/bin/python -c "import qtpy; assert qtpy.API_NAME == 'PyQt6', qtpy.API_NAME; print('GUI smoke tests on', qtpy.API_NAME, qtpy.QT_VERSION)"
exec .venv/bin/python -m pytest tests/test_napari_plugin.py tests/test_gui_annotator.py::test_end_to_end \
    tests/test_gui_annotator.py::test_sample_data_opens_in_the_annotator -p no:cacheprovider "$@"
