"""The simulated annotator of bench/bench_annotation_effort.py: strokes, verified pixels, determinism."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_annotation_effort as effort  # noqa: E402

CLASSES = ["red", "blue", "green"]


@pytest.fixture
def tmp_path(tmp_path):
    """A RAM-disk folder where there is one: every stroke is a project commit, and its file syncs on a busy
    shared disk would make these tests slow (the disk folder otherwise)."""
    import shutil
    import tempfile

    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="effort-test-", dir=shm))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def scenes(count: int = 3, seed: int = 0, h: int = 24, w: int = 32):
    """Images with a ground truth of rectangles (class 0 ground, 1 and 2 boxes) and a void band in the last."""
    rng = np.random.default_rng(seed)
    images, gts = [], []
    for i in range(count):
        gt = np.zeros((h, w), np.uint8)
        for c in (1, 2):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            gt[y:y + rng.integers(3, 8), x:x + rng.integers(3, 8)] = c
        if i == count - 1:
            gt[:, -3:] = 255  # ignored: never painted, never scored
        images.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        gts.append(gt)
    return images, gts


def project_of(tmp_path, count=3, seed=0):
    images, gts = scenes(count, seed)
    return effort.make_project(tmp_path, images, gts, CLASSES, [], {})


def test_brush_covers_a_band_in_one_stroke_and_never_leaves_the_region():
    region = np.zeros((20, 30), bool)
    region[5:12, 3:25] = True  # 7 rows = one sweep of a radius-3 brush
    stroke = effort.longest_stroke(region, 3)
    assert stroke == (8, 3, 24)
    assert (effort.paint_mask(region, stroke, 3) == region).all()
    speck = np.zeros((20, 30), bool)
    speck[19, 29] = True  # a single pixel at the corner is still reached
    assert effort.paint_mask(speck, effort.longest_stroke(speck, 3), 3).sum() == 1
    tall = np.zeros((20, 30), bool)
    tall[0:20, 10:12] = True
    painted = effort.paint_mask(tall, effort.longest_stroke(tall, 2), 2)
    assert painted.any() and not (painted & ~tall).any()


def test_no_assistance_paints_every_pixel_once_to_perfect_labels(tmp_path):
    project, truth = project_of(tmp_path)
    result = effort.simulate(project, truth, effort.Assistant(), radius=2, seed=0)
    assert result.reviewed == 3 and not result.stopped
    assert result.curve[0][2] == 0.0 and result.curve[-1][2] == pytest.approx(1.0)
    for image_id, gt in truth.items():
        labels = project.get_labels(image_id)
        assert (labels[gt != 255] == gt[gt != 255]).all()
        assert (labels[gt == 255] == 255).all()  # void is never painted
        assert project.get_verified(image_id).all()  # Reviewed ✓
    valid = sum(int((gt != 255).sum()) for gt in truth.values())
    assert result.painted == valid  # from empty labels each pixel is painted exactly once
    components = sum(ndimage.label(gt == c)[1] for gt in truth.values() for c in range(3))
    assert result.strokes >= components  # at least one stroke per region
    assert [c[0] for c in result.curve] == list(range(result.strokes + 1))
    assert all(b[1] >= a[1] for a, b in zip(result.curve, result.curve[1:]))
    assert result.reached(0.9) is not None and result.reached(0.9)[0] <= result.strokes


def test_painted_pixels_are_exactly_the_verified_ones(tmp_path):
    project, truth = project_of(tmp_path)
    result = effort.simulate(project, truth, effort.Assistant(), radius=2, seed=0, max_strokes=7)
    assert result.strokes == 7 and result.stopped and result.reviewed == 0
    verified = {i: project.get_verified(i) for i in truth}
    assert sum(int(v.sum()) for v in verified.values()) == result.painted
    for image_id, v in verified.items():
        assert (project.get_labels(image_id)[v] == truth[image_id][v]).all()  # painted with the right class


def test_deterministic_for_a_seed(tmp_path):
    runs = []
    for name, seed in (("one", 3), ("two", 3), ("three", 4)):
        project, truth = project_of(tmp_path / name, count=4)
        runs.append(effort.simulate(project, truth, effort.Assistant(), radius=2, seed=seed))
    assert runs[0].curve == runs[1].curve
    assert runs[0].curve != runs[2].curve  # another seed, another image order


class Spoiler(effort.Assistant):
    """A tool that relabels every unverified pixel of the current image as class 0 after each stroke, as a
    bad prediction would: verified pixels must survive, and the run must still end with perfect labels."""

    name = "spoiler"

    def after_stroke(self, project, image_id):
        labels = project.get_labels(image_id)
        project.merge_prediction(image_id, np.zeros_like(labels))
        return [image_id]


def test_a_tool_that_undoes_unverified_work_cannot_undo_strokes(tmp_path):
    project, truth = project_of(tmp_path)
    result = effort.simulate(project, truth, Spoiler(), radius=2, seed=0)
    assert result.reviewed == 3 and result.curve[-1][2] == pytest.approx(1.0)


def test_maskclip_levels_run_on_a_tiny_model(tmp_path, tiny_vit):
    project, truth = project_of(tmp_path, count=2)
    assistant = effort.Learning(tiny_vit, {"scales": (32,), "key_smoothing": True, "prompt_denoising": True})
    result = effort.simulate(project, truth, assistant, radius=2, seed=0, max_strokes=6)
    assert result.strokes == 6 and result.curve[0][2] > 0.0  # MaskCLIP labelled the images before any stroke
    assert sum(int(project.get_verified(i).sum()) for i in truth) == result.painted
    assert assistant.learner.prototypes.known()  # the strokes taught the learned term
