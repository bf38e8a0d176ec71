"""Truth table of the project's merge rules, through the public Project API only (issue 21 item 1).

Two Project instances on one folder stand for two processes (the annotator and `project segment` /
`refine` / a cluster worker): every save merges into the latest revision under the image's lock.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from maskclip.project import Project

H, W = 8, 12
ROAD, CAR, TREE = 0, 1, 2
U = 255  # unlabelled


@pytest.fixture()
def root(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(src / "img.png")
    Project.create(tmp_path / "p", src, ["road", "car", "tree"])
    return tmp_path / "p"


def _full(value) -> np.ndarray:
    return np.full((H, W), value, np.uint8)


# --- merge_prediction: one pixel state -> result ------------------------------------------------------------

@pytest.mark.parametrize("label, verified, pred, conf, want, want_verified", [
    (U, False, CAR, 1.0, CAR, False),      # unlabelled takes the prediction
    (ROAD, False, CAR, 1.0, CAR, False),   # an unverified label is replaced
    (ROAD, True, CAR, 1.0, ROAD, True),    # a verified label is kept
    (U, True, CAR, 1.0, U, True),          # verified 255 = confirmed background: stays unlabelled
    (ROAD, False, CAR, 0.2, U, False),     # below min_confidence: unlabelled
    (ROAD, True, CAR, 0.2, ROAD, True),    # ... unless verified
    (U, True, CAR, 0.2, U, True),
    (ROAD, False, U, 1.0, U, False),       # a prediction of 255 unlabels unverified pixels
])
def test_merge_prediction_table(root, label, verified, pred, conf, want, want_verified):
    p = Project.open(root)
    p.set_labels("img", _full(label), np.full((H, W), verified))
    assert (p.get_labels("img") == label).all() and (p.get_verified("img") == verified).all()
    out = p.merge_prediction("img", _full(pred), np.full((H, W), conf, np.float32), min_confidence=0.5)
    for q in (p, Project.open(root)):
        labels, v = q.get_labels_and_verified("img")
        assert (labels == want).all() and (v == want_verified).all()
    assert (out == want).all()


def test_prediction_names_the_project_lacks_are_unlabelled(root):
    p = Project.open(root)
    seg = np.zeros((H, W), np.int64)
    seg[:, 6:] = 1
    out = p.merge_prediction("img", seg, class_names=["car", "sky"])
    assert (out[:, :6] == CAR).all() and (out[:, 6:] == U).all()


def test_verified_pixels_survive_merge_prediction(root):
    p = Project.open(root)
    p.merge_prediction("img", _full(ROAD))
    labels = p.get_labels("img")
    labels[1:3, 1:4] = CAR
    labels[5:7, 5:9] = U  # erased: confirmed background
    p.set_labels("img", labels, mark_changed_verified=True)
    for pred in (TREE, ROAD, U):
        p.merge_prediction("img", _full(pred))
        got, v = p.get_labels_and_verified("img")
        assert (got[1:3, 1:4] == CAR).all() and (got[5:7, 5:9] == U).all()
        assert v.sum() == 6 + 8 and v[1:3, 1:4].all() and v[5:7, 5:9].all()
        rest = ~v
        assert (got[rest] == pred).all()


def test_prediction_keeps_pixels_another_instance_verified_after_it_read(root):
    worker, editor = Project.open(root), Project.open(root)
    worker.get_labels("img")
    labels = editor.get_labels("img")
    labels[0:2, 0:2] = TREE
    editor.set_labels("img", labels, mark_changed_verified=True)
    worker.merge_prediction("img", _full(CAR))
    got, v = Project.open(root).get_labels_and_verified("img")
    assert (got[0:2, 0:2] == TREE).all() and v[0:2, 0:2].all() and v.sum() == 4
    assert (got[~v] == CAR).all()


def test_verified_255_is_confirmed_background(root):
    """Both ways a person confirms background: an erased stroke, and verifying unlabelled pixels (Reviewed ✓)."""
    p = Project.open(root)
    p.merge_prediction("img", _full(ROAD))
    labels = p.get_labels("img")
    labels[0:2, :] = U
    p.set_labels("img", labels, mark_changed_verified=True)
    p.merge_prediction("img", np.where(np.arange(H)[:, None] >= 6, U, ROAD).astype(np.uint8) + np.zeros((H, W), np.uint8))
    v = p.get_verified("img")
    v[6:, :] = True  # reviewed: the unlabelled rows are confirmed background
    p.set_verified("img", v)
    assert p.image_state("img").verified_background_pixels == 2 * W + 2 * W
    p.merge_prediction("img", _full(TREE))
    got, v = Project.open(root).get_labels_and_verified("img")
    assert (got[0:2] == U).all() and (got[6:] == U).all() and v[0:2].all() and v[6:].all()
    assert (got[2:6] == TREE).all() and not v[2:6].any()
    state = Project.open(root).image_state("img")
    assert state.verified_background_pixels == 4 * W and state.verified_pixels == 0


def test_removed_class_becomes_unlabelled_and_unverified(root):
    p = Project.open(root)
    labels = _full(ROAD)
    labels[:, 6:] = CAR
    p.set_labels("img", labels, np.ones((H, W), bool))
    p.remove_class("car")
    for q in (p, Project.open(root)):
        got, v = q.get_labels_and_verified("img")
        assert q.class_names == ["road", "tree"]
        assert (got[:, :6] == 0).all() and v[:, :6].all()
        assert (got[:, 6:] == U).all() and not v[:, 6:].any()
    p.add_class("car")  # a new class of the same name: a new uid, the old pixels stay unlabelled
    got, v = p.get_labels_and_verified("img")
    assert (got[:, 6:] == U).all() and not v[:, 6:].any()
    p.merge_prediction("img", _full(p.class_index("car")))  # no longer verified: predictions label them
    assert (p.get_labels("img")[:, 6:] == p.class_index("car")).all()


def test_rename_and_reorder_keep_stored_labels(root):
    p = Project.open(root)
    labels = _full(ROAD)
    labels[:, 6:] = TREE
    p.set_labels("img", labels)
    p.rename_class("tree", "plant")
    p.reorder_classes(["plant", "car", "road"])
    got = Project.open(root).get_labels("img")
    assert (got[:, :6] == 2).all() and (got[:, 6:] == 0).all()


def test_concurrent_edits_to_different_pixels_both_survive(root):
    a, b = Project.open(root), Project.open(root)
    la, lb = a.get_labels("img"), b.get_labels("img")
    la[0:2, 0:3] = CAR
    a.set_labels("img", la, mark_changed_verified=True)
    lb[5:8, 8:12] = TREE
    b.set_labels("img", lb, mark_changed_verified=True)  # b's copy predates a's stroke
    for q in (a, b, Project.open(root)):
        got, v = q.get_labels_and_verified("img")
        assert (got[0:2, 0:3] == CAR).all() and (got[5:8, 8:12] == TREE).all()
        assert v.sum() == 6 + 12 and v[0:2, 0:3].all() and v[5:8, 8:12].all()


def test_concurrent_set_verified_to_different_pixels_both_survive(root):
    a, b = Project.open(root), Project.open(root)
    a.merge_prediction("img", _full(ROAD))
    va, vb = a.get_verified("img"), b.get_verified("img")
    va[0, :] = True
    vb[-1, :] = True
    a.set_verified("img", va)
    b.set_verified("img", vb)
    v = Project.open(root).get_verified("img")
    assert v[0].all() and v[-1].all() and v.sum() == 2 * W


def test_pixels_of_a_class_another_instance_added_are_kept(root):
    mine, other = Project.open(root), Project.open(root)
    labels = mine.get_labels("img")  # read before the other instance adds "water"
    other.add_class("water", ["lake"])
    water = other.class_index("water")
    theirs = other.get_labels("img")
    theirs[0:3, 0:4] = water
    other.set_labels("img", theirs, mark_changed_verified=True)
    labels[6:8, 6:10] = CAR
    mine.set_labels("img", labels, mark_changed_verified=True)
    mine.merge_prediction("img", _full(ROAD))
    # (`mine` itself learns the new class only at its next class/settings change; read from a fresh instance)
    for q in (Project.open(root), Project.open(root)):
        assert q.class_names == ["road", "car", "tree", "water"]
        got, v = q.get_labels_and_verified("img")
        w = q.class_index("water")
        assert (got[0:3, 0:4] == w).all() and v[0:3, 0:4].all()
        assert (got[6:8, 6:10] == CAR).all() and v[6:8, 6:10].all()
        assert (got[~v] == ROAD).all()


def test_edit_from_a_copy_read_before_the_class_was_known_unlabelled_pixels(root):
    """The other instance's class pixels survive also when this instance never re-reads its classes."""
    mine, other = Project.open(root), Project.open(root)
    mine_labels = mine.get_labels("img")
    other.add_class("water")
    w = other.class_index("water")
    other.merge_prediction("img", _full(w))  # unverified pixels of a class `mine` has not seen
    mine_labels[0, 0] = TREE
    mine.set_labels("img", mine_labels, mark_changed_verified=True)
    got, v = Project.open(root).get_labels_and_verified("img")
    assert got[0, 0] == TREE and v[0, 0] and v.sum() == 1
    assert (got[~v] == Project.open(root).class_index("water")).all()


def test_an_editors_second_save_never_reverts_another_writer(root):
    a, b = Project.open(root), Project.open(root)
    copy = a.get_labels("img")  # the editor's copy (the labels layer)
    theirs = b.get_labels("img")
    theirs[4:8, 0:4] = TREE
    b.set_labels("img", theirs, mark_changed_verified=True)  # another writer verifies a block
    copy[0, 8:12] = CAR
    a.set_labels("img", copy, mark_changed_verified=True)  # first stroke from the old copy
    copy[1, 8:12] = CAR
    a.set_labels("img", copy, mark_changed_verified=True)  # second stroke, same copy, not re-read
    for q in (a, Project.open(root)):
        got, v = q.get_labels_and_verified("img")
        assert (got[4:8, 0:4] == TREE).all() and v[4:8, 0:4].all()
        assert (got[0:2, 8:12] == CAR).all() and v[0:2, 8:12].all()
        assert v.sum() == 16 + 8


def test_mark_changed_verified_marks_only_the_editors_own_pixels(root):
    a, b = Project.open(root), Project.open(root)
    copy = a.get_labels("img")
    b.merge_prediction("img", _full(ROAD))  # another process merges a prediction meanwhile
    copy[0, 0:4] = CAR
    a.set_labels("img", copy, mark_changed_verified=True)
    copy[1, 0:4] = CAR
    a.set_labels("img", copy, mark_changed_verified=True)
    got, v = Project.open(root).get_labels_and_verified("img")
    assert (got[0:2, 0:4] == CAR).all() and v[0:2, 0:4].all()
    assert v.sum() == 8  # not the pixels the prediction changed
    assert (got[~v] == ROAD).all()  # and the prediction is not reverted
