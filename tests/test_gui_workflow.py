"""The annotator's daily workflow (issue 10): messages where the user looks, undo, brush and class table,
shortcuts, verified background, reads in a worker, view fitting, model line, export choices, training
state. Each test drives the widget as a user would (buttons, keys, dialogs) in a real napari viewer."""
from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import Qt, QTimer  # noqa: E402
from qtpy.QtWidgets import QApplication, QMessageBox  # noqa: E402

from test_gui_annotator import (  # noqa: E402,F401  (fixtures and helpers shared with the end-to-end test)
    JOB_TIMEOUT_MS,
    add_class,
    annotator,
    checkpoint,
    image_folder,
    press,
    wait_idle,
    wait_shown,
)

pytestmark = pytest.mark.gui
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    pytest.skip("no display: install Xvfb (scripts/system-packages.txt) so pytest-xvfb can start one",
                allow_module_level=True)


def opened(make_napari_viewer, qtbot, folder):
    viewer = make_napari_viewer()
    widget = annotator(viewer)
    assert widget.open_path(folder), widget.message_text()
    return viewer, widget


def test_messages_show_at_the_top_in_gui_words(make_napari_viewer, qtbot, image_folder):
    from napari.utils.notifications import notification_manager

    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    viewer.window._qt_window.resize(1600, 1000)
    add_class(qtbot, widget, "road")
    assert not widget.scroll_area.isAncestorOf(widget.message)  # outside the scrolled controls: always in sight
    widget.set_model_choice("maskclip-tiny-vit", "random", "cuda")  # no GPU on the test machines
    records = len(notification_manager.records)
    qtbot.mouseClick(widget.segment_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, widget)
    text = widget.message_text()
    assert "cuda" in text and "--device" not in text and "Model, weights and device" in text
    assert not widget.message.isHidden()
    assert viewer.status == text  # napari's status bar
    assert any(text in str(n.message) for n in notification_manager.records[records:])  # a notification


def test_busy_bar_while_reading(make_napari_viewer, qtbot, image_folder):
    viewer = make_napari_viewer()
    widget = annotator(viewer)
    assert widget.open_path(image_folder, background=True)
    assert widget.loading and not widget.busy_bar.isHidden() and widget.project is None  # read in a worker
    qtbot.waitUntil(lambda: widget.current_id is not None and not widget.loading, timeout=JOB_TIMEOUT_MS)
    assert widget.busy_bar.isHidden() and "Opened" in widget.message_text()
    qtbot.mouseClick(widget.next_button, Qt.MouseButton.LeftButton)
    assert widget.loading  # the next image is read in a worker too
    wait_shown(qtbot, widget, widget.project.image_ids[1])
    assert viewer.layers["image"].data.shape[:2] == viewer.layers["labels"].data.shape

    # an image that cannot be read: the error at the top, the list back on the image shown
    widget.project.image_path(widget.project.image_ids[2]).write_bytes(b"gone")
    qtbot.mouseClick(widget.next_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.loading, timeout=JOB_TIMEOUT_MS)
    assert widget.current_id == widget.project.image_ids[1] and widget.image_list.currentRow() == 1
    assert widget.project.image_ids[2] in widget.message_text()


def test_saves_are_written_in_the_background_in_order(make_napari_viewer, qtbot, image_folder, monkeypatch):
    """A slow write (a 12-Mpx labels PNG takes ~0.5 s) must not freeze the viewer; going back to the image
    shows what was saved; a failed save says so and is tried again."""
    import threading
    import time

    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    add_class(qtbot, widget, "road")
    project, first = widget.project, widget.current_id
    real_set_labels = type(project).set_labels
    writers = []

    def slow_set_labels(self, *args, **kwargs):
        writers.append(threading.current_thread().name)
        time.sleep(0.5)
        return real_set_labels(self, *args, **kwargs)

    monkeypatch.setattr(type(project), "set_labels", slow_set_labels)
    layer = viewer.layers["labels"]
    layer.paint((20, 20), 1)
    start = time.perf_counter()
    widget.save_current()
    assert time.perf_counter() - start < 0.3 and widget.has_unsaved_edits  # handed to the save thread
    qtbot.mouseClick(widget.next_button, Qt.MouseButton.LeftButton)
    wait_shown(qtbot, widget, project.image_ids[1])
    qtbot.mouseClick(widget.prev_button, Qt.MouseButton.LeftButton)  # read only after the write
    wait_shown(qtbot, widget, first)
    assert viewer.layers["labels"].data[20, 20] == 1 and project.get_verified(first)[20, 20]
    assert writers and all(name.startswith("maskclip-save") for name in writers)

    def failing_set_labels(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(project), "set_labels", failing_set_labels)
    viewer.layers["labels"].paint((40, 40), 1)
    widget.save_current()
    widget.wait_for_saves()
    assert "disk full" in widget.message_text() and widget.has_unsaved_edits
    monkeypatch.setattr(type(project), "set_labels", real_set_labels)
    widget.save_current()  # tried again: the stroke is not lost
    widget.wait_for_saves()
    assert project.get_verified(first)[40, 40] and not widget.has_unsaved_edits


def test_predictions_are_stored_off_the_gui_thread(make_napari_viewer, qtbot, image_folder, checkpoint,
                                                    monkeypatch):
    import threading

    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    for name in ("road", "sky"):
        add_class(qtbot, widget, name)
    project = widget.project
    real_merge = type(project).merge_prediction
    threads = []

    def recording_merge(self, *args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return real_merge(self, *args, **kwargs)

    monkeypatch.setattr(type(project), "merge_prediction", recording_merge)
    widget.set_model_choice("maskclip-tiny-vit", str(checkpoint), "cpu")
    widget.segment_all()
    wait_idle(qtbot, widget)
    assert len(threads) == len(project) and not any(threads)  # stored by the job's worker
    assert all(project.has_labels(i) for i in project.image_ids)
    widget.ks_check.setChecked(not widget.ks_check.isChecked())  # a cheap redraw on the GUI thread...
    qtbot.waitUntil(lambda: len(threads) > len(project), timeout=JOB_TIMEOUT_MS)
    widget.wait_for_saves()
    assert not any(threads)  # ...stored by the save thread
    stored = project.get_labels(widget.current_id)
    shown = viewer.layers["labels"].data
    np.testing.assert_array_equal(np.where(shown == 0, 255, shown - 1), stored)


def test_layers_are_made_before_a_project_opens(make_napari_viewer, qtbot, image_folder):
    """napari needs ~0.1 s of GUI time per new layer: the annotator makes its two while napari starts
    (hidden, empty), and opening a project only fills them."""
    viewer = make_napari_viewer()
    widget = annotator(viewer)
    qtbot.waitUntil(lambda: widget.layers_prepared, timeout=JOB_TIMEOUT_MS)
    image, labels = viewer.layers["image"], viewer.layers["labels"]
    assert not image.visible and not labels.visible and not labels.editable
    assert widget.open_path(image_folder, background=True)
    qtbot.waitUntil(lambda: widget.current_id is not None and not widget.loading, timeout=JOB_TIMEOUT_MS)
    assert viewer.layers["image"] is image and viewer.layers["labels"] is labels  # the same layers, filled
    assert image.visible and labels.visible and labels.editable
    state = widget.project.image_state(widget.current_id)
    assert image.data.shape[:2] == labels.data.shape == (state.height, state.width)
    assert widget.current_id in viewer.title


def test_busy_while_the_model_loads(make_napari_viewer, qtbot, image_folder, checkpoint):
    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    add_class(qtbot, widget, "road")
    widget.set_model_choice("maskclip-tiny-vit", str(checkpoint), "cpu")
    seen = []
    timer = QTimer(interval=1)
    timer.timeout.connect(lambda: seen.append((widget.message_text(), widget.progress.maximum(),
                                                widget.busy_bar.isHidden())))
    timer.start()
    qtbot.mouseClick(widget.segment_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, widget)
    timer.stop()
    loading = [s for s in seen if s[0].startswith("Loading")]
    assert loading and all(maximum == 0 and not hidden for _, maximum, hidden in loading)
    assert widget.progress.maximum() == 1 and widget.busy_bar.isHidden()


def test_reviewed_is_undone_with_its_verified_pixels(make_napari_viewer, qtbot, image_folder, monkeypatch):
    # never segmented: Reviewed ✓ asks first (tests/test_gui_review.py); answered yes
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    add_class(qtbot, widget, "road")
    first = widget.current_id
    layer = viewer.layers["labels"]
    layer.paint((20, 20), 1)
    widget.save_current(wait=True)
    painted = widget.project.get_verified(first).copy()
    qtbot.mouseClick(widget.reviewed_button, Qt.MouseButton.LeftButton)
    widget.wait_for_saves()
    assert widget.project.get_verified(first).all()
    press(viewer, "Control-Z")
    np.testing.assert_array_equal(widget.project.get_verified(first), painted)
    press(viewer, "Control-Z")  # the stroke: the label and its verified flag go
    assert not widget.project.get_verified(first).any() and (widget.project.get_labels(first) == 255).all()
    press(viewer, "Control-Shift-Z")
    np.testing.assert_array_equal(widget.project.get_verified(first), painted)
    assert (widget.project.get_labels(first)[painted] == 0).all()


def test_class_table_and_brush_follow_each_other(make_napari_viewer, qtbot, image_folder):
    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    for name in ("road", "car", "sky"):
        add_class(qtbot, widget, name)
    layer = viewer.layers["labels"]
    table = widget.class_editor.table
    table.selectRow(1)  # the user clicks "car"
    assert layer.selected_label == 2
    assert "car" in widget.brush_label.text()
    layer.selected_label = 3  # napari's label box
    assert widget.class_editor.selected_name() == "sky" and "sky" in widget.brush_label.text()
    assert press(viewer, "1")  # number keys pick classes
    assert layer.selected_label == 1 and widget.class_editor.selected_name() == "road"
    layer.mode = "pan_zoom"
    press(viewer, "2")
    assert layer.selected_label == 2 and layer.mode == "paint"  # ready to paint the class picked
    press(viewer, "9")  # no ninth class: nothing changes
    assert layer.selected_label == 2


def test_shortcuts(make_napari_viewer, qtbot, image_folder, checkpoint):
    from napari.layers import Image, Labels
    from napari.settings import get_settings

    from maskclip_napari._shortcuts import SHORTCUTS

    # none of them is one of napari's own keys (viewer actions, or the layers' when the labels are active)
    from napari.utils.key_bindings import coerce_keybinding

    taken = {str(kb) for kbs in get_settings().shortcuts.shortcuts.values() for kb in kbs}
    taken |= {str(k) for cls in (Labels, Image) for k in cls.class_keymap}
    assert not {str(coerce_keybinding(k)) for k in SHORTCUTS.values()} & taken

    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    for name in ("road", "sky"):
        add_class(qtbot, widget, name)
    ids = widget.project.image_ids
    assert "[PageDown]" in widget.next_button.toolTip() and "[G]" in widget.segment_button.toolTip()
    press(viewer, "PageDown")
    wait_shown(qtbot, widget, ids[1])
    press(viewer, "PageUp")
    wait_shown(qtbot, widget, ids[0])
    widget.set_model_choice("maskclip-tiny-vit", str(checkpoint), "cpu")
    press(viewer, "G")
    wait_idle(qtbot, widget)
    assert widget.project.has_labels(ids[0])
    ks, pd = widget.ks_check.isChecked(), widget.pd_check.isChecked()
    press(viewer, "K")
    press(viewer, "Shift-D")
    assert widget.ks_check.isChecked() != ks and widget.pd_check.isChecked() != pd
    layer = viewer.layers["labels"]
    layer.selected_label = int(np.bincount(layer.data.ravel(), minlength=3)[1:].argmax()) + 1
    press(viewer, "Shift-C")
    assert widget.project.history(ids[0])[-1]["source"] == "verified class"
    press(viewer, "Shift-R")
    assert widget.project.image_state(ids[0]).status == "verified"


def test_all_background_image_can_be_verified(make_napari_viewer, qtbot, image_folder):
    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    add_class(qtbot, widget, "road")
    first, second = widget.project.image_ids[:2]
    assert "not segmented yet" in widget.image_list.item(0).text()
    shape = viewer.layers["labels"].data.shape
    widget.project.merge_prediction(first, np.full(shape, 255, np.uint8), source="maskclip")  # none found
    widget.refresh_from_project()
    assert "all background" in widget.image_list.item(0).text()
    assert "not segmented yet" in widget.image_list.item(1).text()
    qtbot.mouseClick(widget.reviewed_button, Qt.MouseButton.LeftButton)
    widget.wait_for_saves()
    assert widget.project.image_state(first).status == "verified"
    assert "verified: all background" in widget.image_list.item(0).text()
    assert widget.project.get_verified(first).all()


def test_view_fits_a_smaller_image_after_a_larger_one(make_napari_viewer, qtbot, tmp_path, checkpoint):
    from PIL import Image

    folder = tmp_path / "sizes"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (720, 960, 3), dtype=np.uint8)).save(folder / "a_large.png")
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(folder / "b_small.png")
    viewer, widget = opened(make_napari_viewer, qtbot, folder)
    add_class(qtbot, widget, "road")
    widget.set_model_choice("maskclip-tiny-vit", str(checkpoint), "cpu")
    widget.scale_spin.setValue(64)
    widget.segment_current()  # confidence layers exist now, at the large size
    wait_idle(qtbot, widget)
    assert widget.confidence_layers
    zoom_large = viewer.camera.zoom
    qtbot.mouseClick(widget.next_button, Qt.MouseButton.LeftButton)
    wait_shown(qtbot, widget, "b_small")
    assert all(layer.data.shape[:2] == (90, 120) for layer in viewer.layers)  # hidden maps too
    np.testing.assert_allclose(viewer.camera.center[-2:], (44.5, 59.5), atol=1)
    assert viewer.camera.zoom > 4 * zoom_large  # fills the canvas, not a corner thumbnail


def test_model_line_follows_the_project(make_napari_viewer, qtbot, image_folder):
    from maskclip.project import Project

    project = Project.create(image_folder / "maskclip-project", images=image_folder, copy=False,
                             settings={"model": {"name": "maskclip-tiny-rn", "pretrained": None}})
    viewer, widget = opened(make_napari_viewer, qtbot, project.root)
    assert widget.model_combo.currentText() == "maskclip-tiny-rn"
    assert widget.model_label.text().startswith("maskclip-tiny-rn (random weights)")


def click_in_dialog(button_text):
    """Click a button of the next modal dialog once it shows."""
    def click():
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, click)
            return
        for button in box.buttons():
            if button.text() == button_text:
                button.click()
                return
    QTimer.singleShot(20, click)


def test_export_asks_before_replacing_and_splits_val(make_napari_viewer, qtbot, image_folder, tmp_path, monkeypatch):
    from qtpy.QtWidgets import QFileDialog

    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    add_class(qtbot, widget, "road")
    for image_id in widget.project.image_ids:  # the images may differ in size (sample photos without CamVid)
        rec = widget.project.record(image_id)
        widget.project.set_labels(image_id, np.zeros((rec.height, rec.width), np.uint8))
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    fresh = tmp_path / "fresh"
    answers = iter([str(full), str(fresh)])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: next(answers))
    widget.export_val.setValue(10)

    click_in_dialog("Choose another folder…")  # not empty: ask, then the dialog again
    qtbot.mouseClick(widget.export_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, widget)
    assert (fresh / "SegmentationClass").is_dir() and not (full / "SegmentationClass").exists()
    val = (fresh / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert len(val) == 1 and "1 val" in widget.message_text()  # 10 % of 3 images still gives one

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(full))
    click_in_dialog("Replace files")
    qtbot.mouseClick(widget.export_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, widget)
    assert (full / "SegmentationClass").is_dir() and (full / "keep.txt").read_text() == "mine"
    assert "Exported 3 images" in widget.message_text()


def test_unreadable_files_are_named(make_napari_viewer, qtbot, image_folder):
    (image_folder / "broken.png").write_bytes(b"not a png")
    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    assert "broken.png" in widget.message_text() and "Skipped 1 unreadable" in widget.message_text()


def test_stale_explanation_stays_visible(make_napari_viewer, qtbot, image_folder):
    from PIL import Image

    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    add_class(qtbot, widget, "road")
    first, second = widget.project.image_ids[:2]
    viewer.layers["labels"].paint((10, 10), 1)
    widget.save_current(wait=True)
    path = widget.project.image_path(first)
    Image.fromarray(255 - np.asarray(Image.open(path).convert("RGB"))).save(path)
    widget.show_image(second)
    widget.show_image(first)
    viewer.layers["labels"].selected_label = 5  # not a class: Class ✓ says so at the top
    qtbot.mouseClick(widget.verify_class_button, Qt.MouseButton.LeftButton)
    widget.wait_for_saves()
    assert "changed or vanished" not in widget.message_text()
    assert not widget.stale_label.isHidden() and "changed or vanished" in widget.stale_label.text()
    assert "Project.accept_image_change" not in widget.stale_label.text()


def test_training_run_killed_before_its_first_report_shows_failed(make_napari_viewer, qtbot, image_folder):
    from maskclip.project import Project

    project = Project.create(image_folder / "maskclip-project", images=image_folder, copy=False)
    run = project.root / "runs" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"iters": 10}))  # killed before progress.json
    viewer, widget = opened(make_napari_viewer, qtbot, project.root)
    text = widget.training.status_label.text()
    assert "failed" in text and "starting" not in text


def test_empty_folder_creates_no_project(make_napari_viewer, qtbot, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    viewer = make_napari_viewer()
    widget = annotator(viewer)
    assert not widget.open_path(empty)
    assert "has no images" in widget.message_text() and widget.project is None
    assert not (empty / "maskclip-project").exists()
    shutil.rmtree(empty)
