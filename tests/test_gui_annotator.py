"""End-to-end tests of the MaskCLIP Annotator in a real napari viewer (Xvfb via pytest-xvfb).

Tiny random-weight models keep them quick on a CPU; the model is loaded from a checkpoint file so the
"local weights" path of the widget is what runs.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import Qt  # noqa: E402

from maskclip.labels_io import read_label_image  # noqa: E402
from maskclip_napari._dock import dock_annotator  # noqa: E402
from maskclip_napari.editing import from_layer_values  # noqa: E402

pytestmark = pytest.mark.gui
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    pytest.skip("no display: install Xvfb (scripts/system-packages.txt) so pytest-xvfb can start one",
                allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
CAMVID_VAL = ROOT / ".." / "shared" / "data" / "camvid" / "val" / "images"
JOB_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    import maskclip

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny-vit.pt"
    maskclip.load("maskclip-tiny-vit", pretrained=None, device="cpu").save_checkpoint(path)
    return path


@pytest.fixture
def image_folder(tmp_path):
    """Three CamVid images when the shared data is present, the bundled sample photos otherwise."""
    source = CAMVID_VAL if CAMVID_VAL.is_dir() else ROOT / "sample_data" / "images"
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted(source.iterdir())[:3]:
        shutil.copy(path, folder / path.name)
    return folder


def annotator(viewer):
    from maskclip_napari._dock import dock_annotator

    return dock_annotator(viewer)


def wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.busy, timeout=JOB_TIMEOUT_MS)


def from_layer(values):
    return from_layer_values(values, 255)


def wait_shown(qtbot, widget, image_id):
    """Navigation reads in a worker: wait until `image_id` is the image shown."""
    qtbot.waitUntil(lambda: not widget.loading and widget.current_id == image_id, timeout=JOB_TIMEOUT_MS)


def press(viewer, key):
    """A key press as napari dispatches it (active layer's bindings, then the viewer's); returns once the
    saves it caused are written."""
    handled = viewer.window._qt_viewer._key_map_handler.press_key(key)
    dock_annotator(viewer).wait_for_saves()
    return handled


def add_class(qtbot, widget, text):
    editor = widget.class_editor
    editor.new_name.setText(text)
    qtbot.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)


def test_end_to_end(make_napari_viewer, qtbot, image_folder, checkpoint, tmp_path):
    viewer = make_napari_viewer()
    widget = annotator(viewer)
    assert widget.open_path(image_folder), widget.message_text()
    project = widget.project
    assert project.root == image_folder / "maskclip-project"
    assert widget.image_list.count() == 3
    first = widget.current_id
    assert first == project.image_ids[0]
    assert viewer.layers["image"].data.shape[:2] == (project.record(first).height, project.record(first).width)

    # classes through the editor (synonyms after a comma)
    for text in ("road", "car, vehicle", "tree", "sky"):
        add_class(qtbot, widget, text)
    assert project.class_names == ["road", "car", "tree", "sky"]
    assert project.classes[1].synonyms == ("vehicle",)

    # segment with a local checkpoint (random weights)
    widget.set_model_choice("maskclip-tiny-vit", str(checkpoint), "cpu")
    qtbot.mouseClick(widget.segment_button, Qt.MouseButton.LeftButton)
    assert widget.busy  # the encoding runs in a worker thread
    wait_idle(qtbot, widget)
    assert widget.session is not None and widget.session.on_cpu
    assert "CPU" in widget.model_label.text()
    labels_layer = viewer.layers["labels"]
    h, w = labels_layer.data.shape
    assert labels_layer.data.max() >= 1  # something was labelled
    assert list(labels_layer.features["class"]) == ["unlabelled", "road", "car", "tree", "sky"]
    assert sorted(widget.confidence_layers) == ["car", "road", "sky", "tree"]
    assert all(layer.data.shape == (h, w) for layer in widget.confidence_layers.values())
    assert project.has_labels(first)
    stored = project.get_labels(first)
    np.testing.assert_array_equal(np.where(labels_layer.data == 0, 255, labels_layer.data - 1), stored)

    # confidence layers start hidden; showing one fills it with its class's map
    road = widget.confidence_layers["road"]
    assert not road.visible
    road.visible = True
    seg = widget.segmentation
    np.testing.assert_array_equal(road.data, seg.probs[seg.class_names.index("road")])

    # KS / PD toggles redraw from cached features: no new image encoding, done on the GUI thread
    runs = widget.session.model.stats["image_encoder_runs"]
    before = road.data.copy()
    count = widget.redraw_count
    widget.ks_check.setChecked(False)
    qtbot.waitUntil(lambda: widget.redraw_count == count + 1, timeout=2000)
    assert not widget.busy and widget.last_redraw_s is not None
    assert not np.allclose(road.data, before)
    sky = widget.confidence_layers["sky"]  # hidden: filled only when shown
    sky.visible = True
    np.testing.assert_array_equal(sky.data, widget.segmentation.probs[widget.segmentation.class_names.index("sky")])
    widget.pd_check.setChecked(False)
    widget.pd_slider.setValue(0.8)  # debounced with the toggle: one redraw
    qtbot.waitUntil(lambda: widget.redraw_count == count + 2, timeout=2000)
    assert widget.session.model.stats["image_encoder_runs"] == runs
    assert project.settings["method"]["key_smoothing"] is False
    assert project.settings["method"]["pd_threshold"] == pytest.approx(0.8)

    # hovering names the class and its confidence
    r, c = h // 2, w // 2
    viewer.cursor.position = (r, c)
    hover = widget.hover_label.text()
    shown = int(labels_layer.data[r, c])
    assert project.class_names[shown - 1] in hover and "confidence" in hover

    # paint a correction: a brush stroke marks the pixels it changes verified
    window = labels_layer.data[r - 4:r + 5, c - 4:c + 5]
    fix = min(range(1, 5), key=lambda v: (window == v).sum())  # the class least present there
    labels_layer.selected_label = fix
    labels_layer.brush_size = 9
    untouched = labels_layer.data.copy()
    assert not widget.edits.verified.any()
    labels_layer.paint((r, c), fix)
    changed = labels_layer.data != untouched
    assert changed.sum() > 20 and (labels_layer.data[changed] == fix).all()
    assert widget.autosave_pending  # the paint event schedules the autosave
    qtbot.waitUntil(lambda: not widget.has_unsaved_edits, timeout=3000)
    np.testing.assert_array_equal(widget.edits.verified, changed)
    verified_before_nav = widget.edits.verified.copy()
    np.testing.assert_array_equal(project.get_verified(first), verified_before_nav)

    # Ctrl+Z / Ctrl+Shift+Z: labels and verified pixels go back (and forward) together, saved at once
    value = 1 if untouched[5, 5] != 1 else 2
    labels_before = project.get_labels(first).copy()
    labels_layer.paint((5, 5), value)
    assert press(viewer, "Control-Z")  # a stroke not saved yet leaves no trace
    widget.save_current(wait=True)
    np.testing.assert_array_equal(project.get_labels(first), labels_before)
    np.testing.assert_array_equal(project.get_verified(first), verified_before_nav)
    labels_layer.paint((5, 5), value)
    widget.save_current(wait=True)
    assert project.get_labels(first)[5, 5] == value - 1 and project.get_verified(first)[5, 5]
    press(viewer, "Control-Z")  # a saved stroke: undone in the project too, its pixels no longer verified
    widget.wait_for_saves()
    np.testing.assert_array_equal(project.get_labels(first), labels_before)
    np.testing.assert_array_equal(project.get_verified(first), verified_before_nav)
    press(viewer, "Control-Shift-Z")
    widget.wait_for_saves()
    assert project.get_labels(first)[5, 5] == value - 1 and project.get_verified(first)[5, 5]
    press(viewer, "Control-Z")
    widget.save_current(wait=True)  # nothing left to write: the undo was saved as it happened
    np.testing.assert_array_equal(project.get_labels(first), labels_before)
    np.testing.assert_array_equal(project.get_verified(first), verified_before_nav)
    np.testing.assert_array_equal(from_layer(labels_layer.data), labels_before)
    assert "Undone" in widget.message_text()

    # re-segmenting never overwrites verified pixels
    widget.ks_check.setChecked(True)
    qtbot.waitUntil(lambda: widget.redraw_count == count + 3, timeout=2000)
    assert (viewer.layers["labels"].data[changed] == fix).all()

    # move to another image and back
    qtbot.mouseClick(widget.next_button, Qt.MouseButton.LeftButton)
    wait_shown(qtbot, widget, project.image_ids[1])
    assert not widget.project.has_labels(widget.current_id)
    assert viewer.layers["labels"].data.max() == 0
    widget.previous_image()
    wait_idle(qtbot, widget)
    assert widget.current_id == first
    assert (viewer.layers["labels"].data[changed] == fix).all()
    np.testing.assert_array_equal(widget.edits.verified, verified_before_nav)
    assert sorted(widget.confidence_layers) == ["car", "road", "sky", "tree"]  # from the feature cache

    # mark the second image reviewed after segmenting it
    widget.next_image()
    qtbot.mouseClick(widget.segment_button, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, widget)
    second = widget.current_id
    # first one class whose mask is right: the labels layer's selected class
    layer = viewer.layers["labels"]
    counts = np.bincount(layer.data.ravel(), minlength=2)
    present = int(counts[1:].argmax()) + 1  # the commonest class on this image
    if counts[present] == 0:  # nothing but background predicted (random weights): give the class some pixels
        layer.paint((5, 5), present)
    layer.selected_label = present
    qtbot.mouseClick(widget.verify_class_button, Qt.MouseButton.LeftButton)
    widget.wait_for_saves()
    np.testing.assert_array_equal(project.get_verified(second), layer.data == present)
    assert project.history(second)[-1]["source"] == "verified class"
    qtbot.mouseClick(widget.reviewed_button, Qt.MouseButton.LeftButton)
    widget.wait_for_saves()
    assert project.image_state(second).status == "verified"

    # reopen: a new viewer and widget on the same folder find the same project
    viewer.close()
    viewer2 = make_napari_viewer()
    widget2 = annotator(viewer2)
    assert widget2.open_path(image_folder)
    assert widget2.project.root == project.root
    assert widget2.current_id == second  # the last image shown
    widget2.show_image(first)
    np.testing.assert_array_equal(widget2.edits.verified, verified_before_nav)
    assert (viewer2.layers["labels"].data[changed] == fix).all()
    states = {s.id: s.status for s in widget2.project.list_images()}
    assert states == {first: "labelled", second: "verified", widget2.project.image_ids[2]: "unlabelled"}

    # export (VOC) in a worker: class index = value - 1, unlabelled = 255
    out = tmp_path / "voc"
    assert widget2.export(out, "voc") is not None
    wait_idle(qtbot, widget2)
    assert "Exported 2 images" in widget2.message_text()
    exported = read_label_image(out / "SegmentationClass" / f"{first}.png")
    assert (exported[changed] == fix - 1).all()
    assert (out / "labels.txt").read_text().split() == ["road", "car", "tree", "sky"]


def test_class_edits_keep_labels(make_napari_viewer, qtbot, image_folder, checkpoint):
    viewer = make_napari_viewer()
    widget = annotator(viewer)
    widget.open_path(image_folder)
    for name in ("road", "car"):
        add_class(qtbot, widget, name)
    widget.set_model_choice("maskclip-tiny-vit", str(checkpoint), "cpu")
    widget.segment_current()
    wait_idle(qtbot, widget)
    layer = viewer.layers["labels"]
    layer.paint((10, 10), 2)  # "car"
    widget.save_current(wait=True)
    car = layer.data == 2

    # rename and reorder: the painted pixels stay "car", now shown with car's new index
    widget.class_editor.table.item(1, 1).setText("automobile")
    assert widget.project.class_names == ["road", "automobile"]
    widget.class_editor.table.selectRow(1)
    widget.class_editor.move_selected(-1)
    assert widget.project.class_names == ["automobile", "road"]
    assert (viewer.layers["labels"].data[car] == 1).all()
    assert list(viewer.layers["labels"].features["class"]) == ["unlabelled", "automobile", "road"]

    # a colour edit reaches the labels layer
    widget.edit_classes("set_class_colour", "road", (10, 20, 30))
    np.testing.assert_allclose(viewer.layers["labels"].colormap.map(2)[:3], np.array([10, 20, 30]) / 255)

    # a new class costs only its text embedding; background prompts are editable
    runs = widget.session.model.stats["image_encoder_runs"]
    add_class(qtbot, widget, "bicycle")
    wait_idle(qtbot, widget)
    assert "bicycle" in widget.confidence_layers
    assert widget.session.model.stats["image_encoder_runs"] == runs
    widget.class_editor.background.setText("sky, building")
    widget.class_editor.background.editingFinished.emit()
    assert widget.project.background == ["sky", "building"]

    # a refused edit (duplicate name) leaves a message, no exception
    add_class(qtbot, widget, "Road")
    assert "already exists" in widget.message_text()


def test_changed_image_file_is_flagged_then_started_over(make_napari_viewer, qtbot, image_folder):
    from PIL import Image

    viewer = make_napari_viewer()
    widget = annotator(viewer)
    widget.open_path(image_folder)
    add_class(qtbot, widget, "road")
    first, second = widget.project.image_ids[:2]
    viewer.layers["labels"].paint((10, 10), 1)
    widget.save_current(wait=True)
    assert widget.project.get_verified(first).any()
    assert widget.accept_change_button.isHidden()

    # the file is replaced on disk (same size, new pixels) while the project is open elsewhere
    path = widget.project.image_path(first)
    pixels = np.asarray(Image.open(path).convert("RGB"))
    Image.fromarray(255 - pixels).save(path)
    widget.show_image(second)
    widget.show_image(first)
    layer = viewer.layers["labels"]
    assert not layer.editable and (layer.data == 0).all()  # the old labels are not applied to new content
    assert "changed or vanished" in widget.message_text()
    assert not widget.accept_change_button.isHidden()
    assert widget.image_list.item(0).text().startswith(f"{first}   stale")

    qtbot.mouseClick(widget.accept_change_button, Qt.MouseButton.LeftButton)
    assert not widget.project.is_stale(first) and widget.accept_change_button.isHidden()
    layer = viewer.layers["labels"]
    assert layer.editable and (layer.data == 0).all()
    np.testing.assert_array_equal(viewer.layers["image"].data, np.asarray(Image.open(path).convert("RGB")))
    assert not widget.project.get_verified(first).any()
    assert widget.project.history(first)[-1]["source"] == "image changed"


def test_missing_weights_message(make_napari_viewer, qtbot, image_folder, tmp_path):
    viewer = make_napari_viewer()
    widget = annotator(viewer)
    widget.open_path(image_folder)
    add_class(qtbot, widget, "road")
    widget.set_model_choice("maskclip-tiny-vit", str(tmp_path / "missing.pt"), "cpu")
    widget.segment_current()
    wait_idle(qtbot, widget)
    assert "missing.pt" in widget.message_text()
    assert "Model, weights and device" in widget.message_text()  # where to fix it
    assert "Traceback" not in widget.message_text()
    assert widget.session is None and widget.segment_button.isEnabled()


def test_segment_all_and_cancel(make_napari_viewer, qtbot, image_folder, checkpoint):
    viewer = make_napari_viewer()
    widget = annotator(viewer)
    widget.open_path(image_folder)
    add_class(qtbot, widget, "road")
    add_class(qtbot, widget, "sky")
    widget.set_model_choice("maskclip-tiny-vit", str(checkpoint), "cpu")
    from napari.utils import progress

    counts = []  # napari's activity dock shows the job and its count (issue 17)
    progress._all_instances.events.changed.connect(lambda e: counts.extend(
        (p.desc, p.total) for p in e.added))
    widget.segment_all()
    wait_idle(qtbot, widget)
    assert all(s.status == "labelled" for s in widget.project.list_images())
    assert widget.progress.value() == 3
    assert ("MaskCLIP: Segment all", 3) in counts
    assert not any(p.desc.startswith("MaskCLIP") for p in progress._all_instances)  # closed when done

    widget.segment_all()
    widget.cancel()
    wait_idle(qtbot, widget)
    assert "cancel" in widget.message_text()


def test_reader_opens_folder_in_annotator(make_napari_viewer, qtbot, image_folder):
    viewer = make_napari_viewer()
    layers = viewer.open(str(image_folder), plugin="maskclip-napari")
    assert layers == []
    widget = annotator(viewer)
    qtbot.waitUntil(lambda: widget.current_id is not None and not widget.loading, timeout=JOB_TIMEOUT_MS)
    assert widget.project is not None and widget.project.root == image_folder / "maskclip-project"
    assert "image" in viewer.layers and "labels" in viewer.layers


def test_sample_data_opens_in_the_annotator(make_napari_viewer, qtbot, image_folder, tmp_path, monkeypatch):
    """The sample photos become the annotator's project (in the user cache), even over an open project."""
    from maskclip_napari._dock import ensure_registered
    from maskclip_napari._sample_data import SAMPLE_PHOTOS

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ensure_registered()
    viewer = make_napari_viewer()
    widget = annotator(viewer)
    assert widget.open_path(image_folder)
    viewer.open_sample("maskclip-napari", "scenes")
    from maskclip_napari._sample_data import sample_folder

    digest = hashlib.sha1(str(sample_folder().resolve()).encode()).hexdigest()[:8]
    assert widget.project.root == tmp_path / "cache" / "maskclip-napari" / "sample-projects" / f"sample-photos-{digest}"
    assert sorted(widget.project.image_ids) == sorted(SAMPLE_PHOTOS.values())
    assert "person" in widget.project.class_names
    assert [layer.name for layer in viewer.layers if layer._type_string == "image"
            and not layer.name.startswith("confidence")] == ["image"]  # no plain photo layers
    assert viewer.layers.index("image") == 0 and viewer.layers[-1].name == "labels"
    assert viewer.layers["image"].data.shape[:2] == viewer.layers["labels"].data.shape
    widget.next_image()  # the annotator keeps using the handed-back layer
    assert viewer.layers["image"].data.shape[:2] == viewer.layers["labels"].data.shape


def test_another_writers_pixels_survive_the_annotators_saves(make_napari_viewer, qtbot, image_folder):
    """Issue 16.1: while the annotator shows an image, another process verifies a block of it; the annotator
    paints and saves twice. Both writers' pixels survive, and the annotator's layer shows the other's."""
    import subprocess
    import textwrap

    viewer = make_napari_viewer()
    widget = annotator(viewer)
    widget.open_path(image_folder)
    for name in ("road", "car"):
        add_class(qtbot, widget, name)
    image_id = widget.current_id
    layer = viewer.layers["labels"]
    root = widget.project.root
    script = textwrap.dedent(f"""
        import numpy as np
        from maskclip.project import Project
        p = Project.open({str(root)!r})
        labels = p.get_labels({image_id!r})
        labels[:20, :20] = 1
        p.set_labels({image_id!r}, labels, mark_changed_verified=True, source="other process")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    h, w = layer.data.shape
    for k, (r, c) in enumerate(((h - 10, w - 10), (h - 10, w - 30))):
        layer.selected_label = 1  # "road"
        layer.brush_size = 5
        layer.paint((r, c), 1)
        widget.save_current(wait=True)
        widget.wait_for_saves()
        from maskclip.project import Project

        labels, verified = Project.open(root).get_labels_and_verified(image_id)
        assert (labels[:20, :20] == 1).all() and verified[:20, :20].all(), f"the other writer's block lost ({k})"
        assert labels[r, c] == 0 and verified[r, c]
    assert (layer.data[:20, :20] == 2).all(), "the annotator shows the other writer's pixels"
    assert verified.sum() > 400
