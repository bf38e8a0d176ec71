"""The annotator's Dense mode combo: the mode's KS/PD defaults, a re-encode in the worker, per-mode features
cached, and the choice stored in the project (Xvfb via pytest-xvfb, tiny random-weight model)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import Qt  # noqa: E402

pytestmark = pytest.mark.gui
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    pytest.skip("no display: install Xvfb (scripts/system-packages.txt) so pytest-xvfb can start one",
                allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]


def test_dense_mode_combo(make_napari_viewer, qtbot, tmp_path):
    import torch

    import maskclip
    from maskclip_napari._dock import dock_annotator

    torch.manual_seed(0)
    weights = tmp_path / "tiny-vit.pt"
    maskclip.load("maskclip-tiny-vit", pretrained=None, device="cpu").save_checkpoint(weights)
    folder = tmp_path / "images"
    folder.mkdir()
    source = sorted((ROOT / "sample_data" / "images").iterdir())[0]
    shutil.copy(source, folder / source.name)

    widget = dock_annotator(make_napari_viewer())
    assert widget.open_path(folder), widget.message_text()
    for text in ("road", "sky"):
        widget.class_editor.new_name.setText(text)
        qtbot.mouseClick(widget.class_editor.add_button, Qt.MouseButton.LeftButton)
    widget.set_model_choice("maskclip-tiny-vit", str(weights), "cpu")
    assert widget.dense_mode() == "maskclip" and widget.ks_check.isChecked() and widget.pd_check.isChecked()
    qtbot.mouseClick(widget.segment_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    model = widget.session.model
    runs = model.stats["image_encoder_runs"]
    before = widget.segmentation.probs.copy()

    widget.dense_mode_combo.setCurrentIndex(widget.dense_mode_combo.findData("naclip"))
    assert not widget.ks_check.isChecked() and not widget.pd_check.isChecked()  # NACLIP's paper uses neither
    qtbot.waitUntil(lambda: widget.busy or model.stats["image_encoder_runs"] > runs, timeout=5000)
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert model.stats["image_encoder_runs"] > runs  # re-encoded, in the worker
    assert widget.session.model is model  # same weights: no reload
    assert widget.segmentation.probs.shape == before.shape and not (widget.segmentation.probs == before).all()
    qtbot.waitUntil(lambda: widget.project.settings["model"]["dense_mode"] == "naclip", timeout=5000)
    assert widget.project.settings["method"]["key_smoothing"] is False

    runs = model.stats["image_encoder_runs"]
    count = widget.redraw_count
    widget.dense_mode_combo.setCurrentIndex(widget.dense_mode_combo.findData("maskclip"))
    qtbot.waitUntil(lambda: widget.redraw_count > count, timeout=10_000)
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert model.stats["image_encoder_runs"] == runs  # back to a mode whose features are cached
