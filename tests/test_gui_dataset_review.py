"""Issue 22, "what a daily annotator still misses": reviewing a whole dataset. Progress per class, a status
filter on the image list, Next least confident, the low-confidence overlay, the keyboard help and the class
legend, each driven through its real buttons and keys in a napari viewer."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import Qt  # noqa: E402

from maskclip.project import Project  # noqa: E402

from test_gui_annotator import checkpoint, image_folder, press, wait_shown  # noqa: E402,F401
from test_gui_review import answer, opened  # noqa: E402

pytestmark = pytest.mark.gui
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    pytest.skip("no display: install Xvfb (scripts/system-packages.txt) so pytest-xvfb can start one",
                allow_module_level=True)


def segment_elsewhere(widget, confidences, unsure_rows=None):
    """What `maskclip project segment` does from its own process: a prediction with its confidence per image
    (confidences: image id -> the confidence everywhere; unsure_rows: image id -> rows at 0.1)."""
    other = Project.open(widget.project.root)
    for image_id, value in confidences.items():
        h, w = other.get_labels(image_id).shape
        labels = np.zeros((h, w), np.uint8)
        labels[h // 2:] = 1
        conf = np.full((h, w), value, np.float32)
        for rows in (unsure_rows or {}).get(image_id, ()):
            conf[rows] = 0.1
        other.merge_prediction(image_id, labels, conf, source="maskclip")
    widget.refresh_from_project()


def click(qtbot, button):
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_progress_filter_and_least_confident(make_napari_viewer, qtbot, image_folder, monkeypatch):
    answer(monkeypatch, "yes")
    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    a, b, c = widget.project.image_ids[:3]
    # before any segmentation there is nothing to rank: said, nothing moves
    click(qtbot, widget.least_confident_button)
    assert widget.current_id == a and "segment the images first" in widget.message_text()
    segment_elsewhere(widget, {a: 0.9, b: 0.3, c: 0.6})
    assert "road" in widget.class_progress_label.text() and "0%" in widget.class_progress_label.text()
    # least sure first, then the next least sure, wrapping
    click(qtbot, widget.least_confident_button)
    wait_shown(qtbot, widget, b)
    assert "0.30" in widget.message_text()
    click(qtbot, widget.least_confident_button)
    wait_shown(qtbot, widget, c)
    press(viewer, "Shift-N")
    wait_shown(qtbot, widget, a)
    # a reviewed image counts, per class too, and drops out of the ranking
    widget.show_image(b)
    click(qtbot, widget.reviewed_button)
    widget.wait_for_saves()
    assert widget.progress_label.text() == f"1 / {len(widget.project)} verified"
    assert "0%" not in widget.class_progress_label.text().split("road")[1].split("·")[0]
    widget.show_image(a)
    click(qtbot, widget.least_confident_button)
    wait_shown(qtbot, widget, c)  # b (0.3) is verified now
    # the status filter hides the rows it leaves out (not the image shown) and Next steps through the rest
    widget.filter_combo.setCurrentIndex(widget.filter_combo.findData("unverified"))
    ids = widget.project.image_ids
    assert widget.image_list.isRowHidden(ids.index(b)) and not widget.image_list.isRowHidden(ids.index(c))
    widget.show_image(a)
    click(qtbot, widget.next_button)
    wait_shown(qtbot, widget, c)  # b skipped
    widget.filter_combo.setCurrentIndex(widget.filter_combo.findData("reviewed"))
    assert not widget.image_list.isRowHidden(ids.index(b)) and not widget.image_list.isRowHidden(ids.index(c))
    assert widget.image_list.isRowHidden(ids.index(a))
    click(qtbot, widget.next_button)
    wait_shown(qtbot, widget, b)
    click(qtbot, widget.next_button)  # the only reviewed image is shown: said, it stays
    qtbot.wait(50)
    assert widget.current_id == b and "No other image" in widget.message_text()
    # a stroke verifies a few pixels: the image is partly verified
    widget.filter_combo.setCurrentIndex(widget.filter_combo.findData("all"))
    widget.show_image(a)
    viewer.layers["labels"].paint((5, 5), 2)
    widget.save_current(wait=True)
    widget.wait_for_saves()
    widget.filter_combo.setCurrentIndex(widget.filter_combo.findData("partly"))
    assert widget.image_list.isRowHidden(ids.index(b)) and widget.image_list.isRowHidden(ids.index(c))
    widget.show_image(b)
    assert not widget.image_list.isRowHidden(ids.index(a))  # listed for what it is, not for being shown


def test_low_confidence_overlay_and_next_unsure_region(make_napari_viewer, qtbot, image_folder, monkeypatch):
    answer(monkeypatch, "yes")
    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    a = widget.current_id
    h, w = widget.project.get_labels(a).shape
    segment_elsewhere(widget, {a: 0.9}, unsure_rows={a: [slice(0, 10), slice(20, 23)]})
    labels = viewer.layers["labels"]
    press(viewer, "U")  # the overlay, from the stored confidence (no model loaded in this session)
    assert widget.unsure_check.isChecked()
    qtbot.waitUntil(lambda: "low confidence" in viewer.layers, timeout=5000)  # the stored map is read in a thread
    overlay = viewer.layers["low confidence"]
    assert overlay.visible and int(overlay.data.sum()) == 13 * w
    assert viewer.layers.selection.active is labels  # number keys and Ctrl+Z still reach the labels
    assert "stored" in widget.review_panel.source_label.text()
    from maskclip_napari._review import camera

    press(viewer, "Shift-U")  # the largest region first
    assert camera(viewer).center[-2] == pytest.approx(4.5) and "1 of 2" in widget.message_text()
    zoomed = camera(viewer).zoom
    click(qtbot, widget.next_region_button)
    assert camera(viewer).center[-2] == pytest.approx(21.0) and "2 of 2" in widget.message_text()
    assert camera(viewer).zoom >= zoomed
    # a lower threshold: nothing is unsure
    widget.unsure_threshold.setValue(0.05)
    assert int(overlay.data.sum()) == 0
    press(viewer, "Shift-U")
    assert "No unsure region" in widget.message_text()
    widget.unsure_threshold.setValue(0.5)
    # verified pixels are decided: no longer shaded
    click(qtbot, widget.reviewed_button)
    widget.wait_for_saves()
    assert int(overlay.data.sum()) == 0
    press(viewer, "U")
    assert not overlay.visible


def test_keyboard_help_lists_every_key(make_napari_viewer, qtbot, image_folder):
    from maskclip_napari._shortcuts import SHORTCUTS, help_rows, shown_key

    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    press(viewer, "F1")
    dialog = widget.keys_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.rows() == [(key, action.replace("*", "")) for key, action in help_rows()]
    shown = [key for key, _ in dialog.rows()]
    assert all(shown_key(key) in shown for key in SHORTCUTS.values())
    dialog.hide()
    click(qtbot, widget.keys_button)
    assert dialog.isVisible()


def test_legend_hides_classes_on_the_labels_layer(make_napari_viewer, qtbot, image_folder):
    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    a = widget.current_id
    segment_elsewhere(widget, {a: 0.9})  # road on the top half, sky below
    legend = widget.legend
    assert "Class legend" in viewer.window.dock_widgets  # docked beside the canvas (napari's left side)
    rows = [legend.class_list.item(r).text() for r in range(legend.class_list.count())]
    assert rows == ["1  road", "2  sky"]
    layer = viewer.layers["labels"]
    road, sky = layer.colormap.map(1), layer.colormap.map(2)
    assert np.ravel(road)[3] == 1.0 and np.ravel(sky)[3] == 1.0
    legend.class_list.item(1).setCheckState(Qt.CheckState.Unchecked)  # as a click on sky's box
    assert np.ravel(layer.colormap.map(2))[3] == 0.0 and np.ravel(layer.colormap.map(1))[3] == 1.0
    before = layer.data.copy()
    widget.show_image(widget.project.image_ids[1])  # stays hidden on the next image
    assert np.ravel(viewer.layers["labels"].colormap.map(2))[3] == 0.0
    widget.show_image(a)
    assert np.array_equal(viewer.layers["labels"].data, before)  # hiding changes no label
    legend.class_list.item(1).setCheckState(Qt.CheckState.Checked)
    assert np.ravel(layer.colormap.map(2))[3] == 1.0
    legend.only_brush_check.setChecked(True)
    assert layer.show_selected_label


def wand_click(layer, row, col):
    """A click (press, release, no drag) on the labels layer at data (row, col), as napari delivers it."""
    from napari.utils._test_utils import read_only_mouse_event
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    world = tuple(layer.data_to_world((row, col)))
    mouse_press_callbacks(layer, read_only_mouse_event(type="mouse_press", position=world, pos=np.array([5, 5])))
    mouse_release_callbacks(layer, read_only_mouse_event(type="mouse_release", position=world,
                                                         pos=np.array([5, 5])))


def shown_mask(layer, shape):
    """An image layer's mask placed in the image (the wand's preview covers only the region's box)."""
    full = np.zeros(shape, bool)
    y0, x0 = (int(v) for v in layer.translate[-2:])
    h, w = layer.data.shape
    full[y0:y0 + h, x0:x0 + w] = layer.data.astype(bool)
    return full


def test_feature_wand_previews_then_applies_a_verified_region(make_napari_viewer, qtbot, image_folder, checkpoint):
    from test_gui_annotator import wait_idle

    viewer, widget = opened(make_napari_viewer, qtbot, image_folder)
    a = widget.current_id
    layer = viewer.layers["labels"]
    layer.mode = "paint"
    press(viewer, "W")  # without features the wand says what it needs
    assert widget.wand_button.isChecked() and layer.mode == "pan_zoom"
    wand_click(layer, 10, 10)
    assert "segment this image first" in widget.message_text()
    widget.set_model_choice("maskclip-tiny-vit", str(checkpoint), "cpu")
    widget.segment_current()
    wait_idle(qtbot, widget)
    widget.wait_for_saves()
    before_labels = widget.project.get_labels(a).copy()
    press(viewer, "2")  # the brush: sky
    widget.similarity_slider.setValue(90)
    wand_click(layer, 20, 30)
    preview = viewer.layers["wand preview"]
    shape = layer.data.shape
    small = int(shown_mask(preview, shape).sum())
    assert preview.visible and shown_mask(preview, shape)[20, 30] and small >= 1
    widget.similarity_slider.setValue(60)  # a lower similarity grows the region
    grown = shown_mask(preview, shape)
    assert grown.sum() >= small and widget.apply_wand_button.isEnabled()
    assert not widget.project.get_verified(a).any()  # a preview changes nothing yet
    press(viewer, "Shift-W")  # Apply wand ✓
    widget.wait_for_saves()
    labels, verified = widget.project.get_labels(a), widget.project.get_verified(a)
    assert (labels[grown] == 1).all() and verified[grown].all() and not verified[~grown].any()
    assert not preview.visible and not widget.apply_wand_button.isEnabled()
    press(viewer, "Control-Z")  # one undo step takes it back, labels and verified together
    widget.wait_for_saves()
    assert np.array_equal(widget.project.get_labels(a), before_labels)
    assert not widget.project.get_verified(a).any()
    press(viewer, "W")
    assert layer.mode == "paint"
