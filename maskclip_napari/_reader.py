"""napari reader: an image folder or an annotation project folder opens in the annotator widget.

The reader returns napari's "handled, no layers" sentinel `[(None,)]`; the widget adds and manages the
image, confidence and labels layers itself.
"""
from __future__ import annotations

from pathlib import Path

from maskclip.images import list_images
from maskclip.project import PROJECT_FILE


def _openable(path: Path) -> bool:
    if not path.is_dir():
        return False
    if (path / PROJECT_FILE).is_file():
        return True
    try:
        return bool(list_images(path))
    except OSError:
        return False


def get_reader(path):
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not _openable(Path(path)):
        return None
    return read_into_annotator


def read_into_annotator(path):
    import napari

    from ._dock import dock_annotator

    if isinstance(path, list):
        path = path[0]
    viewer = napari.current_viewer()
    dock_annotator(viewer).open_path(Path(path), background=True)  # read in a worker: napari stays responsive
    return [(None,)]
