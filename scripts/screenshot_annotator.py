"""Make the README screenshot (a development script, not installed):
`xvfb-run -a .venv/bin/python scripts/screenshot_annotator.py docs/screenshot_annotator.png`.

It stages a session on the bundled sample photos: segment all (a tiny random-weight model, because no CLIP
weights can be downloaded where the docs are built; the panel says so), two corrections drawn with the
polygon tool (the astronaut and the rocket, now verified pixels), one image marked reviewed, the
"person" confidence map shown, and the cursor over a corrected pixel.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

# outlines in (row, col) of the 320 x 320 sample copy of the astronaut photo, drawn by hand
PERSON = [(8, 140), (12, 170), (30, 186), (60, 188), (90, 180), (100, 176), (106, 186), (130, 200),
          (165, 214), (200, 226), (214, 222), (220, 190), (240, 180), (280, 178), (319, 180), (319, 10),
          (240, 12), (190, 20), (150, 40), (130, 75), (110, 100), (95, 108), (70, 98), (40, 97), (18, 110)]
ROCKET = [(0, 258), (12, 270), (60, 280), (110, 290), (150, 290), (170, 276), (170, 234), (150, 222),
          (110, 228), (60, 238), (12, 248)]


def stage_sample_session():
    """napari with the annotator on a temporary copy of the sample photos, classes set, a tiny
    random-weight CLIP on the CPU. Returns (viewer, widget, app, work folder to delete afterwards)."""
    from maskclip_napari._torch_env import import_torch_stack

    import_torch_stack()  # torch + torchvision without triton, before napari's GL context
    import napari
    from qtpy.QtWidgets import QApplication

    from maskclip_napari._dock import dock_annotator
    from maskclip_napari._sample_data import sample_classes_file, sample_folder

    work = Path(tempfile.mkdtemp(prefix="maskclip-shot-"))
    images = work / "photos"
    shutil.copytree(sample_folder(), images)

    import napari._qt.qt_main_window as qt_main_window

    qt_main_window.SHOW_QT_WARNING = False  # no "PyQt5 is deprecated" toast across the picture
    viewer = napari.Viewer(title="MaskCLIP Annotator")
    viewer.window.resize(1500, 1000)
    widget = dock_annotator(viewer)
    widget.open_path(images, classes_file=sample_classes_file())
    widget.project.set_background([])
    widget._show_classes()
    widget.set_model_choice("maskclip-tiny-vit", "random", "cpu")
    return viewer, widget, QApplication.instance(), work


def main(out: str) -> int:
    import napari
    import torch
    from qtpy.QtCore import QTimer

    viewer, widget, app, work = stage_sample_session()

    def wait_idle():
        while widget._worker is not None:
            app.processEvents()

    torch.manual_seed(0)  # the random weights are drawn in the worker from the global generator
    widget.segment_all()
    wait_idle()
    widget.show_image("cat")
    wait_idle()
    widget.mark_reviewed()
    widget.show_image("astronaut")
    wait_idle()
    labels = viewer.layers["labels"]
    labels.paint_polygon(np.array(PERSON), 1)
    labels.paint_polygon(np.array(ROCKET), 4)
    widget.save_current(wait=True)
    labels.opacity = 0.45
    labels.selected_label = 1
    labels.mode = "polygon"
    widget.class_editor.table.selectRow(0)
    viewer.reset_view()
    app.processEvents()  # the cheap redraw of the confidence maps finishes on the next event-loop turn
    viewer.cursor.position = (150, 60)
    widget._on_cursor()

    def shoot():
        viewer.screenshot(out, canvas_only=False)
        viewer.close()
        shutil.rmtree(work, ignore_errors=True)

    QTimer.singleShot(1500, shoot)
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot_annotator.png"))
