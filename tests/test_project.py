"""Project store: ids, lazy state, verified pixels, class remapping, stale images, history."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from maskclip.errors import MaskCLIPError
from maskclip.project import Project, ProjectError, StaleImageError

H, W = 12, 16


def _write_images(folder, names, seed=0):
    rng = np.random.default_rng(seed)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def project(tmp_path):
    _write_images(tmp_path / "src", ["a.png", "b.png", "c.jpg"])
    return Project.create(tmp_path / "proj", tmp_path / "src", ["road", ["car", "vehicle"], "sky"])


def _labels(rows_per_class):
    """Horizontal bands: class k on rows_per_class[k] rows, the rest 255."""
    lab = np.full((H, W), 255, np.uint8)
    row = 0
    for k, n in enumerate(rows_per_class):
        lab[row:row + n] = k
        row += n
    return lab


def test_create_open_and_layout(project, tmp_path):
    assert project.image_ids == ["a", "b", "c"]
    assert project.class_names == ["road", "car", "sky"]
    assert project.prompts == [["road"], ["car", "vehicle"], ["sky"]]
    assert len(set(project.class_colours)) == 3
    assert project.cache_dir == tmp_path / "proj" / "cache" and project.cache_dir.is_dir()
    meta = json.loads((tmp_path / "proj" / "project.json").read_text())
    assert meta["version"] == 1 and meta["images_mode"] == "copy"
    assert [c["name"] for c in meta["classes"]] == ["road", "car", "sky"]
    assert meta["background"] and "model" in meta["settings"] and "method" in meta["settings"]
    # copies carry the content hash of the original
    rec = project.record("a")
    assert (tmp_path / "proj" / rec.file).read_bytes() == (tmp_path / "src" / "a.png").read_bytes()
    reopened = Project.open(tmp_path / "proj")
    assert reopened.image_ids == project.image_ids
    assert reopened.get_image("c").shape == (H, W, 3)
    assert [s.status for s in reopened.list_images()] == ["unlabelled"] * 3
    with pytest.raises(ProjectError, match="already a project"):
        Project.create(tmp_path / "proj", tmp_path / "src")


def test_reference_mode_and_duplicate_stems(tmp_path):
    _write_images(tmp_path / "src", ["x/img.png", "y/img.png", "y/img.jpg", "img.png"])
    p = Project.create(tmp_path / "proj", tmp_path / "src", ["a"], copy=False, recursive=True)
    assert sorted(p.image_ids) == ["img", "x__img", "y__img", "y__img-2"]
    assert len({p.image_path(i) for i in p.image_ids}) == 4
    assert all(p.image_path(i).is_relative_to(tmp_path / "src") for i in p.image_ids)
    assert not (tmp_path / "proj" / "images").exists()
    # importing the same files again adds nothing
    report = p.add_images(tmp_path / "src", recursive=True)
    assert report.added == [] and len(report.skipped) == 4 and len(p) == 4


def test_unreadable_images_are_listed_and_skipped(tmp_path):
    _write_images(tmp_path / "src", ["good.png"])
    (tmp_path / "src" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "src" / "empty.jpg").write_bytes(b"")
    p = Project.create(tmp_path / "proj", tmp_path / "src", ["a"])
    assert p.image_ids == ["good"]
    skipped = dict(p.skipped_images)
    assert set(map(os.path.basename, skipped)) == {"broken.png", "empty.jpg"}
    assert all(reason for reason in skipped.values())
    assert Project.open(tmp_path / "proj").status()["skipped_at_import"][0]["reason"]


def test_labels_roundtrip_stats_and_status(project):
    lab = _labels([3, 4, 2])
    project.set_labels("a", lab, verified=lab == 0)
    reopened = Project.open(project.root)
    np.testing.assert_array_equal(reopened.get_labels("a"), lab)
    np.testing.assert_array_equal(reopened.get_verified("a"), lab == 0)
    np.testing.assert_array_equal(reopened.get_labels("b"), np.full((H, W), 255))
    assert not reopened.get_verified("b").any()
    states = {s.id: s for s in reopened.list_images()}
    assert states["a"].status == "labelled" and states["b"].status == "unlabelled"
    assert states["a"].labelled_fraction == pytest.approx(9 / H)
    assert states["a"].verified_fraction == pytest.approx(3 / H)
    assert reopened.class_pixel_counts() == {"road": 3 * W, "car": 4 * W, "sky": 2 * W}
    assert reopened.class_pixel_counts(verified_only=True) == {"road": 3 * W, "car": 0, "sky": 0}
    status = reopened.status()
    assert status["images"] == 3 and status["labelled"] == 1 and status["stale"] == []
    reopened.set_verified("a", np.ones((H, W), bool))  # verified unlabelled pixels: confirmed background
    assert reopened.image_state("a").status == "verified"
    assert reopened.image_state("a").verified_background_pixels == int((lab == 255).sum())
    np.testing.assert_array_equal(reopened.get_verified("a"), np.ones((H, W), bool))


def test_background_can_be_verified(project):
    """An image where none of the classes appears can be confirmed; predictions keep it unlabelled."""
    nothing = np.full((H, W), 255, np.uint8)
    project.merge_prediction("b", nothing, source="maskclip")
    state = project.image_state("b")
    assert state.rev == 1 and state.status == "unlabelled"  # segmented, all background, not yet reviewed
    assert project.image_state("c").rev == 0  # never segmented
    project.set_verified("b", np.ones((H, W), bool), source="reviewed")
    assert project.image_state("b").status == "verified"
    merged = project.merge_prediction("b", np.zeros((H, W), np.uint8), source="maskclip")
    assert (merged == 255).all() and project.get_verified("b").all()
    assert {s.id: s.status for s in Project.open(project.root).list_images()}["b"] == "verified"
    # a removed class's verified pixels lose their flag; confirmed background keeps it
    lab = _labels([3, 4, 2])
    project.set_labels("a", lab, verified=np.ones((H, W), bool))
    project.remove_class("car")
    verified = project.get_verified("a")
    assert not verified[lab == 1].any() and verified[lab == 255].all() and verified[lab == 0].all()


def test_invalid_labels_are_refused(project):
    with pytest.raises(ProjectError, match="shape"):
        project.set_labels("a", np.zeros((H, W + 1), np.uint8))
    with pytest.raises(ProjectError, match="3 classes"):
        project.set_labels("a", np.full((H, W), 3, np.uint8))
    with pytest.raises(ProjectError, match="no image"):
        project.get_labels("nope")
    with pytest.raises(MaskCLIPError):
        project.merge_prediction("a", np.zeros((H, W), np.float32))


def test_merge_prediction_never_changes_verified_pixels(project):
    rng = np.random.default_rng(1)
    person = rng.integers(0, 3, (H, W)).astype(np.uint8)
    verified = rng.random((H, W)) < 0.3
    project.set_labels("a", person, verified=verified)
    for step in range(4):  # re-segment / refine several times, with and without confidence
        pred = rng.integers(0, 3, (H, W))
        conf = rng.random((H, W)) if step % 2 else None
        merged = project.merge_prediction("a", pred, conf, min_confidence=0.5)
        stored = project.get_labels("a")
        np.testing.assert_array_equal(merged, stored)
        np.testing.assert_array_equal(stored[verified], person[verified])
        expect = pred if conf is None else np.where(conf >= 0.5, pred, 255)
        np.testing.assert_array_equal(stored[~verified], expect[~verified])
        np.testing.assert_array_equal(project.get_verified("a"), verified)


def test_merge_prediction_maps_segmentation_class_names(project):
    # a Segmentation with user classes in another order plus the appended "background"
    names = ["sky", "road", "background"]
    pred = np.zeros((H, W), np.int32)
    pred[:, 5:10] = 1
    pred[:, 10:] = 2
    merged = project.merge_prediction("b", pred, class_names=names)
    assert (merged[:, :5] == project.class_index("sky")).all()
    assert (merged[:, 5:10] == project.class_index("road")).all()
    assert (merged[:, 10:] == 255).all()  # the project has no "background" class


def test_paint_marks_changed_pixels_verified(project):
    project.merge_prediction("a", np.zeros((H, W), np.int64))
    edit = project.get_labels("a")
    edit[2:4, 3:6] = 2
    project.set_labels("a", edit, mark_changed_verified=True)
    expected = np.zeros((H, W), bool)
    expected[2:4, 3:6] = True
    np.testing.assert_array_equal(project.get_verified("a"), expected)


def test_class_edits_remap_stored_labels(project):
    lab = _labels([2, 3, 4])  # road rows 0-1, car 2-4, sky 5-8, rest 255
    verified = np.zeros((H, W), bool)
    verified[:9, :4] = True
    project.set_labels("a", lab, verified=verified)
    names = lambda labels: np.array(project.class_names + [None] * (256 - len(project.class_names)),  # noqa: E731
                                    dtype=object)[labels]
    before = names(project.get_labels("a"))

    project.rename_class("car", "automobile")
    after = names(project.get_labels("a"))
    np.testing.assert_array_equal(after[before == "car"], "automobile")
    np.testing.assert_array_equal(after[before != "car"], before[before != "car"])

    project.reorder_classes(["sky", "automobile", "road"])
    project.add_class("tree")
    reordered = Project.open(project.root)  # the new order is on disk
    lab2 = reordered.get_labels("a")
    assert reordered.class_names == ["sky", "automobile", "road", "tree"]
    assert (lab2[:2] == 2).all() and (lab2[2:5] == 1).all() and (lab2[5:9] == 0).all() and (lab2[9:] == 255).all()
    np.testing.assert_array_equal(reordered.get_verified("a"), verified)
    assert reordered.class_pixel_counts() == {"sky": 4 * W, "automobile": 3 * W, "road": 2 * W, "tree": 0}

    # removing a class: its pixels become 255 and lose their verified flag; the others are untouched
    reordered.remove_class("automobile")
    lab3 = reordered.get_labels("a")
    assert reordered.class_names == ["sky", "road", "tree"]
    assert (lab3[2:5] == 255).all() and (lab3[:2] == 1).all() and (lab3[5:9] == 0).all()
    v3 = reordered.get_verified("a")
    assert not v3[2:5].any() and v3[:2, :4].all() and v3[5:9, :4].all()
    assert reordered.class_pixel_counts(verified_only=True) == {"sky": 16, "road": 8, "tree": 0}
    # re-adding a removed name is a new class: the old pixels stay unlabelled
    reordered.add_class("automobile")
    assert (reordered.get_labels("a")[2:5] == 255).all()
    # a prediction written now uses the new indices and still keeps verified pixels
    reordered.merge_prediction("a", np.full((H, W), reordered.class_index("tree")))
    lab4 = reordered.get_labels("a")
    assert (lab4[:2, :4] == reordered.class_index("road")).all() and (lab4[2:5] == reordered.class_index("tree")).all()


def test_set_classes_keeps_labels_of_kept_names(project):
    project.set_labels("a", _labels([2, 3, 4]))
    project.set_classes(["sky", ["road", "street"], "person"])
    assert project.class_names == ["sky", "road", "person"]
    assert project.prompts[1] == ["road", "street"]
    lab = project.get_labels("a")
    assert (lab[:2] == 1).all() and (lab[2:5] == 255).all() and (lab[5:9] == 0).all()
    with pytest.raises(ProjectError, match="unique"):
        project.set_classes(["a", "A"])
    with pytest.raises(ProjectError, match="already exists"):
        project.rename_class("sky", "Road")


def test_changed_image_is_stale_and_labels_not_applied(project):
    lab = _labels([3, 3, 3])
    project.set_labels("a", lab, verified=lab != 255)
    project.set_labels("b", lab)
    path = project.image_path("a")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(path)  # new content, same size
    reopened = Project.open(project.root)
    states = {s.id: s for s in reopened.list_images()}
    assert states["a"].stale and states["a"].status == "stale" and not states["b"].stale
    assert reopened.status()["stale"] == ["a"]
    with pytest.raises(StaleImageError, match="changed"):
        reopened.get_labels("a")
    with pytest.raises(StaleImageError):
        reopened.merge_prediction("a", np.zeros((H, W), np.int64))
    assert reopened.class_pixel_counts()["road"] == 3 * W  # only b counts
    np.testing.assert_array_equal(reopened.get_labels("a", allow_stale=True), lab)
    # touching a file without changing its bytes is not a change
    os.utime(reopened.image_path("b"), ns=(1, 1))
    assert not reopened.is_stale("b")
    # accepting the new content starts over (old labels stay in history)
    reopened.accept_image_change("a")
    assert not reopened.is_stale("a") and not reopened.has_labels("a")
    assert [h["rev"] for h in reopened.history("a")] == [1, 2]
    # a vanished file is stale too
    os.unlink(reopened.image_path("b"))
    assert Project.open(project.root).is_stale("b")


def test_accept_image_change_keep_labels(project):
    lab = _labels([3, 3, 3])
    project.set_labels("a", lab)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(project.image_path("a"))
    project.accept_image_change("a", keep_labels=True)
    np.testing.assert_array_equal(project.get_labels("a"), lab)


def test_history_restore_and_pruning(tmp_path):
    _write_images(tmp_path / "src", ["a.png"])
    p = Project.create(tmp_path / "proj", tmp_path / "src", ["x", "y"], history=3)
    for k in range(6):
        p.set_labels("a", np.full((H, W), k % 2, np.uint8), verified=np.eye(H, W, dtype=bool) if k == 1 else None,
                     source=f"step{k}")
    hist = p.history("a")
    assert [h["rev"] for h in hist] == [3, 4, 5, 6] and hist[-1]["current"] and hist[0]["source"] == "step2"
    files = sorted(f.name for f in (tmp_path / "proj" / "annotations" / "a").iterdir())
    assert len([f for f in files if f.endswith(".labels.png")]) == 4  # pruned beyond the limit
    labels, _ = p.get_revision("a", 3)
    assert (labels == 0).all()
    p.restore_revision("a", 3)
    assert (p.get_labels("a") == 0).all() and p.history("a")[-1]["source"] == "restore r3"
    with pytest.raises(ProjectError, match="no revision 1"):
        p.restore_revision("a", 1)
    p.clear_labels("a")
    assert not p.has_labels("a") and (p.get_labels("a") == 255).all()


def test_settings_and_background(project):
    project.update_settings({"method": {"key_smoothing": False}, "train": {"iterations": 10}})
    project.set_background(["wall", "floor"])
    p = Project.open(project.root)
    assert p.settings["method"]["key_smoothing"] is False
    assert p.settings["method"]["prompt_denoising"] is True
    assert p.settings["train"] == {"iterations": 10}
    assert p.background == ["wall", "floor"]
    p.set_class_colour("sky", (1, 2, 3))
    p.set_class_synonyms("sky", ["heaven", "sky"])
    p = Project.open(project.root)
    assert p.classes[2].colour == (1, 2, 3) and p.classes[2].synonyms == ("heaven",)


def test_summary_cache_follows_other_writers(project):
    first = Project.open(project.root)
    assert first.list_images()[0].labelled_pixels == 0  # fills the summary cache
    other = Project.open(project.root)  # e.g. a cluster worker
    other.set_labels("a", _labels([1, 1, 1]))
    assert first.list_images()[0].labelled_pixels == 3 * W
    assert Project.open(project.root).list_images()[0].labelled_pixels == 3 * W


def test_newer_format_is_refused(project):
    meta = json.loads((project.root / "project.json").read_text())
    meta["version"] = 99
    (project.root / "project.json").write_text(json.dumps(meta))
    with pytest.raises(ProjectError, match="newer"):
        Project.open(project.root)
    with pytest.raises(ProjectError, match="not found"):
        Project.open(project.root / "nothing")


def test_open_is_lazy(project, monkeypatch):
    project.set_labels("a", _labels([1, 1, 1]))
    import maskclip.project.files as mod  # the store reads every image, label file and hash through it

    def forbidden(*args, **kwargs):
        raise AssertionError("open must not read images or labels")

    monkeypatch.setattr(mod, "read_image", forbidden)
    monkeypatch.setattr(mod, "read_label_image", forbidden)
    monkeypatch.setattr(mod, "sha256_file", forbidden)
    p = Project.open(project.root)
    assert p.image_ids == ["a", "b", "c"] and p.class_names == ["road", "car", "sky"]
    assert [s.status for s in p.list_images()] == ["labelled", "unlabelled", "unlabelled"]
    assert p.status()["class_pixels"]["road"] == W
