"""A small project committed in the on-disk format of 2026-12 (format version 1) must read back the same:
labels, verified masks, every kept revision, history, classes, settings and statistics (issue 21 item 1).

tests/data/golden_project was written once by tests/data/make_golden_project.py (which documents the edits
behind each revision); the expected values beside it (golden_project_expected.npz / .json) were read back
with the same code. Never regenerate them to make this test pass: a difference is a format change.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "golden_project"


@pytest.fixture()
def golden(tmp_path):
    from maskclip.project import Project

    root = tmp_path / "golden"
    shutil.copytree(GOLDEN, root)
    return Project.open(root)


@pytest.fixture(scope="module")
def expected():
    with np.load(DATA / "golden_project_expected.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    return arrays, json.loads((DATA / "golden_project_expected.json").read_text(encoding="utf-8"))


def test_classes_and_settings(golden, expected):
    meta = expected[1]
    assert golden.image_ids == meta["image_ids"] == ["alpha", "beta", "gamma"]
    assert golden.class_names == meta["class_names"] == ["road", "plant", "water"]  # tree renamed, car removed
    assert [list(c) for c in golden.class_colours] == meta["class_colours"]
    assert golden.prompts == meta["prompts"]
    assert golden.background == meta["background"]
    assert golden.settings == meta["settings"]
    assert golden.settings["method"]["pd_threshold"] == 0.4


def test_labels_and_verified(golden, expected):
    arrays = expected[0]
    for image_id in golden.image_ids:
        labels, verified = golden.get_labels_and_verified(image_id)
        assert labels.dtype == np.uint8 and verified.dtype == bool
        np.testing.assert_array_equal(labels, arrays[f"{image_id}/labels"], err_msg=image_id)
        np.testing.assert_array_equal(verified, arrays[f"{image_id}/verified"], err_msg=image_id)
        np.testing.assert_array_equal(golden.get_labels(image_id), labels)
        np.testing.assert_array_equal(golden.get_verified(image_id), verified)
        np.testing.assert_array_equal(golden.get_image(image_id), arrays[f"{image_id}/image"])
        assert golden.has_labels(image_id) == (image_id != "gamma")


def test_rules_visible_in_the_golden_labels(golden):
    """The same data, read as the rules it was made to show (independent of the .npz)."""
    road, plant, water = 0, 1, 2
    a, av = golden.get_labels_and_verified("alpha")
    # the car stroke (verified when painted): its class was removed -> unlabelled and no longer verified
    assert (a[2:6, 2:8] == 255).all() and not av[2:6, 2:8].any()
    # the erased block verified as confirmed background: stays unlabelled and verified through predictions
    assert (a[12:18, 22:30] == 255).all() and av[12:18, 22:30].all()
    # the water stroke after the class was added: verified water
    assert (a[20:, :6] == water).all() and av[20:, :6].all()
    assert av.sum() == 24 + 48
    # the low-confidence merge: unverified pixels below min_confidence are unlabelled, above it road
    rest = ~av
    cols = np.broadcast_to(np.arange(a.shape[1]), a.shape)
    conf = np.linspace(0, 1, a.shape[1], dtype=np.float32)[cols]
    assert (a[rest & (conf >= 0.5) & ~((cols >= 2) & (cols < 8) & (np.arange(a.shape[0])[:, None] < 6)
                                        & (np.arange(a.shape[0])[:, None] >= 2))] == road).all()
    assert (a[rest & (conf < 0.5)] == 255).all()
    b, bv = golden.get_labels_and_verified("beta")
    assert (b[:, :4] == 255).all()  # a background prompt's pixels: the project has no such class
    assert (b[0:4, 8:16] == plant).all() and bv[0:4, 8:16].all()  # painted as "tree", renamed "plant"
    # verified by set_verified while they were "car"; the class was removed: unlabelled and unverified
    assert (b[20:, 28:] == 255).all() and not bv[20:, 28:].any()
    assert bv.sum() == 32
    g, gv = golden.get_labels_and_verified("gamma")
    assert (g == 255).all() and not gv.any()


def test_history_and_revisions(golden, expected):
    arrays, meta = expected
    for image_id in golden.image_ids:
        history = golden.history(image_id)
        assert history == meta["history"][image_id], image_id
        for entry in history:
            labels, verified = golden.get_revision(image_id, entry["rev"])
            np.testing.assert_array_equal(labels, arrays[f"{image_id}/r{entry['rev']}/labels"])
            np.testing.assert_array_equal(verified, arrays[f"{image_id}/r{entry['rev']}/verified"])
    assert [(h["rev"], h["source"], h["current"]) for h in golden.history("alpha")] == [
        (1, "prediction", False), (2, "manual", False), (3, "manual", False), (4, "prediction", False),
        (5, "refine", False), (6, "manual", True)]
    assert [h["source"] for h in golden.history("beta")] == ["prediction", "manual", "verify"]
    assert [h["source"] for h in golden.history("gamma")] == ["prediction", "clear"]


def test_statistics(golden, expected):
    meta = expected[1]
    status = golden.status()
    assert status.pop("project") == str(golden.root)
    assert status == meta["status"]
    assert golden.class_pixel_counts() == meta["class_pixel_counts"]
    assert golden.class_pixel_counts(verified_only=True) == meta["class_verified_counts"]
    assert golden.broken_images() == []
    states = {s.id: s for s in golden.list_images()}
    for image_id, want in meta["image_state"].items():
        for s in (states[image_id], golden.image_state(image_id)):
            got = {k: getattr(s, k) for k in want}
            assert got == want, image_id
            assert s.path == golden.image_path(image_id)
            assert (s.height, s.width) == (24, 32)
    assert not any(golden.is_stale(i) for i in golden.image_ids)


def test_restore_and_write_on_golden(golden, expected):
    """Today's code keeps writing into a project of this format: a restore is a new revision equal to the old one."""
    arrays = expected[0]
    golden.restore_revision("alpha", 3)
    assert golden.history("alpha")[-1]["rev"] == 7
    labels, verified = golden.get_labels_and_verified("alpha")
    np.testing.assert_array_equal(labels, arrays["alpha/r3/labels"])
    np.testing.assert_array_equal(verified, arrays["alpha/r3/verified"])
