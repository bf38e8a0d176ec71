"""'Learn from corrections' in the annotator: a stroke teaches the current and every other image, through the
project's learner (the text-prior learner the CLI's --learn-from-verified uses), fitted in a worker; and a
stroke over pixels that already show its class verifies them."""
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


def test_corrections_teach_every_image(make_napari_viewer, qtbot, folder, checkpoint, monkeypatch):
    import threading

    from maskclip import learner
    from maskclip.learner import ProjectLearner
    from maskclip_napari._dock import dock_annotator
    from maskclip_napari._wording import pixel_count

    fits = []  # for every learner fit, whether it ran on the GUI thread (it must not)
    fit = learner.fit_residual

    def spy(*args, **kwargs):
        fits.append(threading.current_thread() is threading.main_thread())
        return fit(*args, **kwargs)

    monkeypatch.setattr(learner, "fit_residual", spy)
    viewer = make_napari_viewer()
    widget = dock_annotator(viewer)
    assert widget.open_path(folder), widget.message_text()
    project = widget.project
    project.set_classes(["sky", "road"])
    project.set_background([])
    widget.open_project(project)
    widget.set_model_choice("maskclip-tiny-vit", str(checkpoint), "cpu")
    widget.scale_spin.setValue(128)
    assert not widget.learn_weight.isVisibleTo(widget)  # the text-prior learner has no weight to tune
    widget.learn_check.setChecked(True)
    widget.show_image(project.image_ids[0])
    widget.segment_current()
    qtbot.waitUntil(lambda: not widget.busy, timeout=JOB_TIMEOUT_MS)
    assert project.settings["learn"]["from_verified"] is True
    assert isinstance(widget.session.learner, ProjectLearner)  # the project's learner, as the CLI builds it

    # the random-weight text labels the two halves somehow; the annotator says the opposite with two strokes
    layer = viewer.layers["labels"]
    top = int(np.bincount(layer.data[:48].ravel(), minlength=3)[1:].argmax()) + 1
    bottom = 3 - top
    layer.brush_size = 9
    for col in range(6, 128, 8):
        layer.paint((15, col), bottom, refresh=False)
        layer.paint((75, col), top, refresh=False)
    painted = layer.data.copy()
    widget.save_current()
    widget.wait_for_saves()  # the saved strokes start a job: the learner re-reads them and refits in its worker
    qtbot.waitUntil(lambda: not widget.busy and (layer.data[:48] == bottom).mean() > 0.9, timeout=JOB_TIMEOUT_MS)
    assert sorted(widget.session.learner.taught()) == ["road", "sky"]
    qtbot.waitUntil(lambda: "learned from your corrections" in widget.message_text(), timeout=5000)
    verified = project.get_verified(widget.current_id)
    assert (layer.data[verified] == painted[verified]).all()  # strokes are kept
    assert (layer.data[48:] == top).mean() > 0.9
    # the class table says how many verified pixels taught each class
    editor = widget.class_editor
    taught = project.class_pixel_counts(verified_only=True)
    for name in ("sky", "road"):
        assert taught[name] > 0 and editor.taught_text(name) == pixel_count(taught[name])

    # KS changes how far the learner trusts itself (chosen through the pipeline): a toggle refits in a worker,
    # never on the GUI thread; toggling back to a setting fitted before is a cheap redraw on the GUI thread
    shown = widget.segmentation
    widget.ks_check.setChecked(not widget.ks_check.isChecked())
    qtbot.waitUntil(lambda: not widget.busy and widget.segmentation is not shown, timeout=JOB_TIMEOUT_MS)
    count, fitted = widget.redraw_count, len(fits)
    widget.ks_check.setChecked(not widget.ks_check.isChecked())
    qtbot.waitUntil(lambda: widget.redraw_count > count, timeout=5000)
    assert len(fits) == fitted, "toggling back refitted"
    assert fits and not any(fits), "the learner was fitted on the GUI thread"

    # the other image follows the corrections too (its split is elsewhere): Segment all uses the learner
    widget.segment_all()
    qtbot.waitUntil(lambda: not widget.busy, timeout=JOB_TIMEOUT_MS)
    stored = project.get_labels(project.image_ids[1])
    assert (stored[:30] == bottom - 1).mean() > 0.9 and (stored[30:] == top - 1).mean() > 0.9
    widget.next_image()
    qtbot.waitUntil(lambda: not widget.loading, timeout=JOB_TIMEOUT_MS)
    layer = viewer.layers["labels"]
    assert (layer.data[:30] == bottom).mean() > 0.9 and (layer.data[30:] == top).mean() > 0.9

    # off again: text alone, and the Taught column hides
    widget.learn_check.setChecked(False)
    qtbot.waitUntil(lambda: (viewer.layers["labels"].data[:30] == top).mean() > 0.5, timeout=JOB_TIMEOUT_MS)
    assert project.settings["learn"]["from_verified"] is False
    assert editor.taught_text("sky") == ""
    assert not any(fits)


def test_the_brush_footprint_is_naparis_own():
    """`brush_footprint` (what a dab confirms) covers exactly the pixels napari's brush paints."""
    from maskclip_napari._stroke_layer import StrokeLabels, brush_footprint

    for size, coord in ((1, (10, 10)), (5, (10.4, 9.6)), (9, (2, 30)), (10, (17, 0)), (15, (10, 12))):
        layer = StrokeLabels(np.zeros((20, 32), np.uint8))
        layer.brush_size = size
        layer.paint(coord, 1)
        box, mask = brush_footprint(layer.data.shape, coord, size)
        expected = np.zeros(layer.data.shape, bool)
        expected[box] = mask
        np.testing.assert_array_equal(layer.data == 1, expected)
        np.testing.assert_array_equal(layer.take_touched(), expected)
        assert layer.take_touched() is None


def test_a_stroke_over_its_own_class_verifies_it(make_napari_viewer, qtbot, folder, MouseEvent):
    """Painting road over pixels that already show road changes no value, so napari reports nothing; the
    annotator verifies them all the same (a mouse stroke, and a scripted `paint`)."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_move_callbacks, mouse_press_callbacks, mouse_release_callbacks

    from maskclip_napari._dock import dock_annotator

    viewer = make_napari_viewer()
    widget = dock_annotator(viewer)
    assert widget.open_path(folder), widget.message_text()
    project = widget.project
    project.set_classes(["sky", "road"])
    image_id = project.image_ids[0]
    labels = np.full((96, 128), 255, np.uint8)
    labels[48:] = 1  # a prediction: road below, not verified
    project.merge_prediction(image_id, labels, source="maskclip")
    widget.open_project(project)
    widget.show_image(image_id)
    layer = viewer.layers["labels"]
    assert (layer.data[48:] == 2).all() and not project.get_verified(image_id).any()

    # a mouse stroke of road across the road half
    layer.mode = "paint"
    layer.selected_label = 2
    layer.brush_size = 5
    for kind, position in (("mouse_press", (70, 10)), ("mouse_move", (70, 60)), ("mouse_release", (70, 60))):
        event = ReadOnlyWrapper(MouseEvent(type=kind, is_dragging=kind == "mouse_move", position=position,
                                           view_direction=None, dims_displayed=(0, 1), dims_point=(0, 0)))
        {"mouse_press": mouse_press_callbacks, "mouse_move": mouse_move_callbacks,
         "mouse_release": mouse_release_callbacks}[kind](layer, event)
    assert (layer.data[48:] == 2).all()  # nothing changed ...
    qtbot.waitUntil(lambda: not widget.has_unsaved_edits, timeout=5000)  # ... yet the stroke was saved
    widget.wait_for_saves()
    verified = project.get_verified(image_id)
    assert verified[70, 10:61].all() and verified[68:73, 30].all()  # the brush's footprint is verified
    assert not verified[:48].any() and verified.sum() < 5 * 60  # and nothing else
    assert (project.get_labels(image_id)[48:] == 1).all()

    # a scripted dab, and the stroke is one undo step with its verified pixels
    layer.paint((90, 100), 2)
    widget.save_current(wait=True)
    widget.wait_for_saves()
    assert project.get_verified(image_id)[90, 100]
    widget.undo()
    widget.wait_for_saves()
    assert not project.get_verified(image_id)[90, 100] and project.get_verified(image_id)[70, 30]


def test_the_weight_shows_only_for_a_project_set_to_the_prototypes(qtbot, folder):
    """The panel follows the project's learner (`settings.learn_spec`): the text-prior learner (default) has
    no weight; a project set to the class prototypes (kept for comparison) shows and stores theirs."""
    from maskclip.project import Project
    from maskclip_napari.panels.method import MethodPanel

    project = Project.create(folder.parent / "p", sorted(folder.iterdir()), classes=["sky", "road"])
    panel = MethodPanel()
    qtbot.addWidget(panel)
    panel.load_settings({"learn": {"from_verified": True}})
    assert not panel.learn_weight.isVisibleTo(panel) and panel.method(project).learner == "text-prior"
    assert "weight" not in panel.settings_update(project)["learn"]
    panel.load_settings({"learn": {"from_verified": True, "learner": "prototypes", "weight": 0.7}})
    method = panel.method(project)
    assert panel.learn_weight.isVisibleTo(panel) and (method.learner, method.learn_weight) == ("prototypes", 0.7)
    assert panel.settings_update(project)["learn"] == {"from_verified": True, "weight": 0.7}
    panel.learn_check.setChecked(False)
    assert panel.method(project).learner is None
