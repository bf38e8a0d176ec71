"""Look at the dataset-review tools as a user would (a development script, not installed):
`MASKCLIP_TOY_CLIP_DIR=../shared/models xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python
scripts/screenshot_review.py OUT_FOLDER` writes review.png, wand.png and keys.png (window grabs at 1280x800).

Six CamVid images from ../shared/data. The toy CLIP's softmax(100 x cosine) saturates (every best-class
probability is 1.0), so for the look of the overlay the stored confidence is synthetic: low where the colour
changes fast (where a real CLIP is unsure: boundaries); the labels are three horizontal bands. The wand then
runs on the toy CLIP's real features of the image shown.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "camvid" / "val" / "images"
TOY = ROOT.parent / "shared" / "models" / "toy-clip-v1-1400x128.pt"


def main(out: Path) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from maskclip_napari._torch_env import import_torch_stack

    import_torch_stack()  # before napari's GL context (see _torch_env)
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication
    from scipy import ndimage

    from maskclip.project import Project
    from maskclip_napari._dock import dock_annotator

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="maskclip-review-shot-"))
    (work / "images").mkdir()
    for path in sorted(CAMVID.iterdir())[:6]:
        shutil.copy(path, work / "images" / path.name)
    viewer = napari.Viewer(title="MaskCLIP Annotator")
    viewer.window._qt_window.resize(1280, 800)
    widget = dock_annotator(viewer)
    app = QApplication.instance()

    def settle(condition=lambda: True, timeout=600.0, turns=30):
        end = time.time() + timeout
        while not condition() and time.time() < end:
            app.processEvents()
            time.sleep(0.02)
        for _ in range(turns):
            app.processEvents()
            time.sleep(0.03)

    widget.open_path(work / "images")
    for name in ["sky", "building", "road", "tree", "car", "pavement"]:
        widget.edit_classes("add_class", name)
    other = Project.open(widget.project.root)  # as `maskclip project segment` would store them
    for i, image_id in enumerate(other.image_ids):
        grey = other.get_image(image_id).astype(np.float32).mean(-1)
        edge = ndimage.gaussian_filter(np.hypot(ndimage.sobel(grey, 0), ndimage.sobel(grey, 1)), 6)
        confidence = np.clip(1.0 - edge / (edge.max() * (0.5 + 0.1 * i)), 0, 1)
        h, w = grey.shape
        labels = np.full((h, w), 1, np.int64)
        labels[: h // 3], labels[int(h * 0.65):] = 0, 2
        other.merge_prediction(image_id, labels, confidence)
    widget.refresh_from_project()
    widget.filter_combo.setCurrentIndex(widget.filter_combo.findData("unverified"))
    widget.least_confident_button.click()
    settle(lambda: not widget.loading)
    widget.next_region_button.click()  # turns the overlay on and zooms to the largest unsure region
    widget.legend.set_visible("sky", False)
    settle(lambda: not widget.review.reading)
    viewer.window._qt_window.grab().save(str(out / "review.png"))
    print("dock width", widget.width(), "canvas", viewer.window._qt_viewer.canvas.size)

    widget.unsure_check.setChecked(False)
    widget.set_model_choice("maskclip-toy-clip", str(TOY), "cpu")
    widget.segment_current()
    settle(lambda: not widget.busy)
    viewer.reset_view()
    widget.select_class(2)  # road
    widget.wand_button.click()
    widget.similarity_slider.setValue(92)
    h, w = widget.image.shape[:2]
    widget.wand.click((h * 0.85, w * 0.5))
    settle()
    print(widget.message_text())
    viewer.window._qt_window.grab().save(str(out / "wand.png"))
    dialog = widget.show_keys()
    settle()
    dialog.grab().save(str(out / "keys.png"))
    viewer.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "review-shots")))
