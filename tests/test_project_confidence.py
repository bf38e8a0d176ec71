"""The project keeps the latest prediction's confidence per image: the annotator's review tools rank images
by it (Next least confident) and show where the model is unsure (the low-confidence overlay)."""
import numpy as np
from PIL import Image

from maskclip.project import Project

H, W = 12, 16


def make(tmp_path, n=3):
    rng = np.random.default_rng(0)
    (tmp_path / "src").mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(tmp_path / "src" / f"i{i}.png")
    return Project.create(tmp_path / "proj", tmp_path / "src", ["road", "sky"])


def test_a_prediction_with_confidence_is_kept_and_ranked(tmp_path):
    p = make(tmp_path)
    a, b, c = p.image_ids
    conf = np.full((H, W), 0.9, np.float32)
    conf[:3] = 0.1
    p.merge_prediction(a, np.zeros((H, W), np.uint8), conf)
    p.merge_prediction(b, np.ones((H, W), np.uint8), np.full((H, W), 0.4, np.float32))
    p.merge_prediction(c, np.ones((H, W), np.uint8))  # no confidence: nothing stored
    assert p.confidence_map(c) is None
    got = p.confidence_map(a)
    assert got.shape == (H, W) and got.dtype == np.float32
    assert np.allclose(got, conf, atol=1 / 255)
    scores = Project.open(p.root).confidence_scores()  # read back from disk
    assert set(scores) == {a, b} and scores[b] < scores[a]
    assert np.isclose(scores[a], conf.mean(), atol=1e-3)


def test_the_score_leaves_out_verified_pixels_and_later_edits_keep_the_map(tmp_path):
    p = make(tmp_path)
    a = p.image_ids[0]
    verified = np.zeros((H, W), bool)
    verified[:6] = True
    p.set_labels(a, np.zeros((H, W), np.uint8), verified)
    conf = np.full((H, W), 0.8, np.float32)
    conf[:6] = 0.0  # unsure only where a person already decided
    p.merge_prediction(a, np.ones((H, W), np.uint8), conf)
    assert np.isclose(p.confidence_scores()[a], 0.8, atol=1e-3)
    p.set_verified(a, np.ones((H, W), bool))  # an edit: the model's map stays
    assert p.confidence_map(a) is not None


def test_a_changed_image_file_drops_its_confidence(tmp_path):
    p = make(tmp_path)
    a = p.image_ids[0]
    p.merge_prediction(a, np.zeros((H, W), np.uint8), np.full((H, W), 0.5, np.float32))
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(p.image_path(a))
    fresh = Project.open(p.root)
    assert fresh.confidence_map(a) is None and a not in fresh.confidence_scores()


def test_class_progress_counts_pixels_per_class(tmp_path):
    p = make(tmp_path)
    a = p.image_ids[0]
    labels = np.zeros((H, W), np.uint8)
    labels[:4] = 1
    verified = np.zeros((H, W), bool)
    verified[:4] = True
    p.set_labels(a, labels, verified)
    assert p.class_progress() == {"road": ((H - 4) * W, 0), "sky": (4 * W, 4 * W)}


def test_class_progress_of_an_instance_that_has_not_seen_the_classes(tmp_path):
    """Another process set the classes and labels: an instance opened before (no classes) still counts."""
    p = make(tmp_path)
    stale = Project.open(p.root)
    stale.set_classes([])
    p = Project.open(p.root)
    p.set_classes(["road"])
    p.set_labels(p.image_ids[0], np.zeros((H, W), np.uint8))
    assert stale.class_progress(stale.list_images()) == {}
