"""The annotator's per-image edit state (maskclip_napari.editing.EditState), without a display or napari."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np

from maskclip_napari.editing import EditState, from_layer_values, to_layer_values

N = 3  # classes; layer values 1..3, 0 = unlabelled


def started(values, verified=None) -> EditState:
    state = EditState()
    state.load(np.zeros(values.shape, bool) if verified is None else verified)
    state.start(values, N)
    return state


def saved_edit(labels, verified, stored, stored_verified):
    """What a written save reports (the fields of `_saving.SavedEdit` that EditState.adopt reads)."""
    return SimpleNamespace(labels=labels, verified=verified, stored=stored, stored_verified=stored_verified)


def test_layer_values_round_trip():
    labels = np.array([[0, 1, 2, 255]], np.uint8)
    values = to_layer_values(labels)
    assert values.tolist() == [[1, 2, 3, 0]]
    np.testing.assert_array_equal(from_layer_values(values, N), labels)
    assert from_layer_values(np.array([[4]], np.uint8), N).tolist() == [[255]]  # beyond the classes


def test_a_stroke_is_recorded_verified_and_saved_against_its_base():
    values = np.zeros((4, 4), np.uint8)
    state = started(values)
    assert state.editable and not state.dirty and state.take_save(N) is None
    base_labels, base_verified = state.base
    assert (base_labels == 255).all() and not base_verified.any()
    layer = values.copy()
    layer[1, 1:3] = 2
    assert state.record(layer) and state.dirty
    assert not state.record(layer)  # nothing new
    np.testing.assert_array_equal(state.verified, layer != values)
    labels, verified, base = state.take_save(N)
    assert labels[1, 1] == 1 and labels[0, 0] == 255 and verified.sum() == 2
    assert base[0] is base_labels and not state.dirty
    assert state.base[0] is labels  # the next save's edits are relative to this one
    state.mark_unsaved()
    assert state.dirty


def test_an_erased_pixel_is_confirmed_background():
    values = np.full((2, 2), 2, np.uint8)
    state = started(values)
    layer = values.copy()
    layer[0, 0] = 0
    state.record(layer)
    assert state.verified[0, 0] and state.verified.sum() == 1
    assert from_layer_values(state.recorded, N)[0, 0] == 255


def test_pixels_a_brush_confirmed_are_verified_as_one_undoable_step():
    """A stroke over pixels that already show its class changes no value; the pixels it went over
    (`touched`, from the labels layer) are verified all the same, in the stroke's own undo step."""
    values = np.full((4, 4), 2, np.uint8)
    state = started(values)
    touched = np.zeros((4, 4), bool)
    touched[1, :] = True
    assert not state.record(values)  # the old behaviour's view: nothing changed
    assert state.record(values, touched) and state.dirty
    np.testing.assert_array_equal(state.verified, touched)
    assert not state.record(values, touched)  # already verified: nothing new
    layer = values.copy()
    layer[3, 3] = 1  # a stroke that changes one pixel and confirms its row
    row = np.zeros((4, 4), bool)
    row[3] = True
    assert state.record(layer, row) and state.verified[3].all()
    state.step(False, layer)  # undo: the second stroke's value and confirmations go together
    assert state.recorded[3, 3] == 2 and not state.verified[3].any() and state.verified[1].all()


def test_undo_and_redo_restore_labels_and_verified_together():
    values = np.zeros((3, 3), np.uint8)
    state = started(values)
    layer = values.copy()
    layer[0, 0] = 1
    shown = state.step(False, layer)  # the stroke not recorded yet is the step undone
    np.testing.assert_array_equal(shown, values)
    assert not state.verified.any() and state.dirty
    shown = state.step(True, shown)
    assert shown[0, 0] == 1 and state.verified[0, 0]
    assert state.step(True, shown) is None  # nothing to redo
    state.start(shown, N)  # a new image (or labels reloaded): the history starts over
    assert state.step(False, shown) is None


def test_reviewed_and_class_verification_are_undoable_edits():
    values = np.array([[0, 1], [2, 1]], np.uint8)
    state = started(values)
    state.verify(0, values)  # class 0 (layer value 1)
    np.testing.assert_array_equal(state.verified, values == 1)
    state.verify(None, values)  # Reviewed: every pixel, unlabelled ones as confirmed background
    assert state.verified.all() and state.dirty
    state.step(False, values)
    np.testing.assert_array_equal(state.verified, values == 1)


def test_each_image_keeps_its_undo_history_for_the_session():
    from maskclip_napari.editing import KEPT_HISTORIES

    values = np.zeros((4, 4), np.uint8)
    state = EditState()
    state.load(np.zeros(values.shape, bool))
    state.start(values, N, image_id="a")
    state.verify(None)
    state.load(np.zeros(values.shape, bool))
    state.start(values, N, image_id="b")  # Next: b's own (empty) history
    assert state.step(False, values) is None
    state.load(np.ones(values.shape, bool))
    state.start(values, N, image_id="a")  # back on a: its Reviewed ✓ can be undone
    assert state.step(False, values) is not None and not state.verified.any()
    for i in range(KEPT_HISTORIES):  # bounded: the oldest image's history goes
        state.start(values, N, image_id=f"other{i}")
    state.start(values, N, image_id="a")
    assert not state.history.can_redo


def test_unverify_is_an_undoable_edit_that_keeps_labels():
    values = np.array([[1, 2], [0, 1]], np.uint8)
    state = started(values, np.ones((2, 2), bool))
    assert state.unverify(0) == 2  # class 0 = layer value 1
    np.testing.assert_array_equal(state.verified, values != 1)
    assert state.unverify(None) == 2 and not state.verified.any()
    np.testing.assert_array_equal(state.recorded, values)
    state.step(False, values)
    state.step(False, values)
    assert state.verified.all()


def test_a_stale_image_is_not_editable():
    state = EditState()
    state.load(np.zeros((2, 2), bool), stale=True)
    state.start(np.zeros((2, 2), np.uint8), N, editable=False)
    assert state.stale and not state.editable and state.base is None
    assert not state.record(np.ones((2, 2), np.uint8)) and state.take_save(N) is None


def test_adopt_shows_other_writers_pixels_and_keeps_mine():
    """After a save, pixels another writer committed replace the layer's where this annotator has not
    changed them since, and join the base of the next save (so they are not taken for its edits)."""
    values = np.zeros((2, 3), np.uint8)
    state = started(values)
    layer = values.copy()
    layer[0, 0] = 1  # my stroke
    state.record(layer)
    labels, verified, _ = state.take_save(N)
    # the project after the merge: another writer verified (1, 2) as class 2 and (0, 1) as class 1
    stored, stored_verified = labels.copy(), verified.copy()
    stored[1, 2], stored_verified[1, 2] = 2, True
    stored[0, 1], stored_verified[0, 1] = 1, True
    layer[0, 1] = 3  # a stroke of mine on (0, 1) since that save: mine wins in the layer
    adopted = state.adopt(saved_edit(labels, verified, stored, stored_verified), N, layer)
    mask, new_values = adopted
    assert mask.tolist() == [[False, False, False], [False, False, True]]
    assert new_values[1, 2] == 3 and state.recorded[1, 2] == 3 and state.verified[1, 2]
    assert state.recorded[0, 1] == 3  # my later edit kept
    base_labels, base_verified = state.base
    assert base_labels[1, 2] == 2 and base_labels[0, 1] == 1 and base_verified[1, 2]
    # the next save takes my edit against a base holding the other writer's pixels
    labels2, _, base = state.take_save(N)
    assert labels2[1, 2] == 2 and labels2[0, 1] == 2 and base[0][0, 1] == 1


def test_adopt_with_nothing_from_others_changes_nothing():
    values = np.zeros((2, 2), np.uint8)
    state = started(values)
    layer = values.copy()
    layer[0, 0] = 2
    state.record(layer)
    labels, verified, _ = state.take_save(N)
    base = state.base
    assert state.adopt(saved_edit(labels, verified, labels.copy(), verified.copy()), N, layer) is None
    assert state.base is base


def test_editing_needs_no_qt():
    import subprocess

    code = ("import sys; import maskclip_napari.editing; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt5', 'PySide2', 'PyQt6', 'PySide6', "
            "'napari')]; print(bad); sys.exit(bool(bad))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
