"""'Learn from corrections' in the annotator: a stroke teaches the current and every other image at once."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from test_prototypes import two_tone  # noqa: E402

pytestmark = pytest.mark.gui
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    pytest.skip("no display: install Xvfb (scripts/system-packages.txt) so pytest-xvfb can start one",
                allow_module_level=True)

JOB_TIMEOUT_MS = 60_000


@pytest.fixture
def folder(tmp_path):
    from PIL import Image

    src = tmp_path / "images"
    src.mkdir()
    Image.fromarray(two_tone(0, 48)).save(src / "a.png")
    Image.fromarray(two_tone(1, 30)).save(src / "b.png")
    return src


@pytest.fixture
def checkpoint(tmp_path):
    import torch

    import maskclip

    torch.manual_seed(0)
    path = tmp_path / "tiny-vit.pt"
    maskclip.load("maskclip-tiny-vit", pretrained=None, device="cpu").save_checkpoint(path)
    return path


def test_corrections_teach_every_image(make_napari_viewer, qtbot, folder, checkpoint):
    from maskclip_napari._dock import dock_annotator

    viewer = make_napari_viewer()
    widget = dock_annotator(viewer)
    assert widget.open_path(folder), widget.message_text()
    project = widget.project
    project.set_classes(["sky", "road"])
    project.set_background([])
    widget.open_project(project)
    widget.set_model_choice("maskclip-tiny-vit", str(checkpoint), "cpu")
    widget.scale_spin.setValue(128)
    widget.learn_check.setChecked(True)
    widget.learn_weight.setValue(1.0)
    widget.show_image(project.image_ids[0])
    widget.segment_current()
    qtbot.waitUntil(lambda: not widget.busy, timeout=JOB_TIMEOUT_MS)
    assert project.settings["learn"] == {"from_verified": True, "weight": 1.0}

    # the random-weight text labels the two halves somehow; the annotator says the opposite with two strokes
    layer = viewer.layers["labels"]
    top = int(np.bincount(layer.data[:48].ravel(), minlength=3)[1:].argmax()) + 1
    bottom = 3 - top
    count = widget.redraw_count
    layer.brush_size = 9
    for col in range(6, 128, 8):
        layer.paint((15, col), bottom, refresh=False)
        layer.paint((75, col), top, refresh=False)
    painted = layer.data.copy()
    widget.save_current()
    widget.wait_for_saves()  # the saved strokes teach the prototypes
    assert sorted(widget.session.learner.prototypes.known()) == ["road", "sky"]
    qtbot.waitUntil(lambda: widget.redraw_count > count, timeout=5000)
    assert not widget.busy  # taught and redrawn from cached features on the GUI thread
    verified = project.get_verified(widget.current_id)
    assert (layer.data[verified] == painted[verified]).all()  # strokes are kept
    assert (layer.data[:48] == bottom).mean() > 0.9 and (layer.data[48:] == top).mean() > 0.9

    # the other image follows the corrections too (its split is elsewhere)
    widget.next_image()
    widget.segment_current()
    qtbot.waitUntil(lambda: not widget.busy, timeout=JOB_TIMEOUT_MS)
    layer = viewer.layers["labels"]
    assert (layer.data[:30] == bottom).mean() > 0.9 and (layer.data[30:] == top).mean() > 0.9

    # off again: text alone
    widget.learn_check.setChecked(False)
    qtbot.waitUntil(lambda: (viewer.layers["labels"].data[:30] == top).mean() > 0.5, timeout=5000)
    assert project.settings["learn"]["from_verified"] is False
