"""`maskclip project segment` under torchrun (gloo, 2 CPU processes): each process segments a shard of the
images and merges it into the one project; the labels equal those of a single process, rank 0 prints the
summary, and an image that fails on another rank is named by that rank and in the summary."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from maskclip.project import Project

H, W = 40, 56
N_IMAGES = 5
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        e.pop(name, None)
    return e


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Images with a few coloured blocks, a classes file and a tiny random ViT saved as a checkpoint (the
    same weights in every process)."""
    import maskclip

    tmp = tmp_path_factory.mktemp("dist")
    rng = np.random.default_rng(0)
    images = tmp / "images"
    images.mkdir()
    for i in range(N_IMAGES):
        img = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
        for _ in range(3):
            top, left = rng.integers(0, H - 12), rng.integers(0, W - 12)
            img[top:top + 12, left:left + 12] = rng.integers(0, 256, 3)
        Image.fromarray(img).save(images / f"im{i}.png")
    classes = tmp / "classes.txt"
    classes.write_text("road\ncar\nsky\ntree\n")
    torch.manual_seed(0)
    weights = tmp / "tiny.pt"
    maskclip.load("maskclip-tiny-vit", pretrained=None, device="cpu").save_checkpoint(weights)
    return tmp, images, classes, weights


def new_project(tmp, name, images, classes) -> Project:
    from maskclip.cli import main

    assert main(["project", "init", str(tmp / name), "--images", str(images), "--classes-file", str(classes)]) == 0
    return Project.open(tmp / name)


def segment(project: Project, weights, processes: int, *extra: str) -> subprocess.CompletedProcess:
    """`project segment` in one process or under torchrun; weights: a checkpoint file or "none" (random)."""
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone",
                                          "--nproc-per-node", str(processes)]
    # sliding windows; no PD / KS, so that random weights label more than one class
    cmd = [sys.executable, *launcher, "-m", "maskclip", "project", "segment", str(project.root),
           "--model", "maskclip-tiny-vit", "--pretrained", str(weights), "--scales", "64", "--window", "32",
           "--stride", "16", "--no-prompt-denoising", "--no-key-smoothing", "--device", "cpu", *extra]
    return subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)


def test_two_processes_give_the_labels_of_one(setup):
    tmp, images, classes, weights = setup
    one, two = new_project(tmp, "one", images, classes), new_project(tmp, "two", images, classes)
    single = segment(one, weights, 1)
    assert single.returncode == 0, single.stderr[-3000:]
    assert f"segmented {N_IMAGES} images (0 skipped" in single.stdout
    double = segment(two, weights, 2)
    assert double.returncode == 0, double.stderr[-3000:]
    # rank 0 alone reports: one header, its own shard's progress (3 of 5 images), one summary for all
    assert double.stdout.count(f"segmenting {N_IMAGES} images on 2 processes") == 1
    assert double.stdout.count(f"segmented {N_IMAGES} images on 2 processes (0 skipped") == 1
    assert "[3/3]" in double.stdout and "[1/2]" not in double.stdout
    one, two = Project.open(one.root), Project.open(two.root)
    assert one.image_ids == two.image_ids and len(one.image_ids) == N_IMAGES
    for image_id in one.image_ids:
        np.testing.assert_array_equal(two.get_labels(image_id), one.get_labels(image_id))
        assert two.history(image_id)[-1]["source"] == one.history(image_id)[-1]["source"]
    assert len(np.unique([one.get_labels(i) for i in one.image_ids])) > 1  # not one constant answer


def test_random_weights_are_the_same_in_every_process(setup):
    """--pretrained none: each process draws the weights from the same seed (as `maskclip train` does)."""
    tmp, images, classes, _ = setup
    one, two = new_project(tmp, "rnd1", images, classes), new_project(tmp, "rnd2", images, classes)
    for project, processes in ((one, 1), (two, 2)):
        res = segment(project, "none", processes)
        assert res.returncode == 0, res.stderr[-3000:]
    one, two = Project.open(one.root), Project.open(two.root)
    for image_id in one.image_ids:
        np.testing.assert_array_equal(two.get_labels(image_id), one.get_labels(image_id))


def test_an_image_failing_on_another_rank_is_reported(setup):
    tmp, images, classes, weights = setup
    project = new_project(tmp, "broken", images, classes)
    bad = project.image_ids[1]  # the shard of process 1
    project.set_labels(bad, np.zeros((H, W), np.uint8))
    state = json.loads((project.root / "annotations" / bad / "state.json").read_text())
    (project.root / "annotations" / bad / state["labels"]).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    res = segment(project, weights, 2)
    assert res.returncode != 0  # rank 0 exits 1: some images failed
    assert f"process 1: skipped {bad}:" in res.stderr
    assert (f"segmented {N_IMAGES - 1} images on 2 processes (0 skipped: stale or already labelled; "
            f"1 failed: {bad})") in res.stdout
    project = Project.open(project.root)
    assert [i for i in project.image_ids if project.history(i)[-1]["source"].startswith("maskclip")] == \
        [i for i in project.image_ids if i != bad]


def test_an_error_that_stops_the_processes_is_one_line_per_error(setup):
    tmp, images, classes, weights = setup
    project = new_project(tmp, "unknown", images, classes)
    res = segment(project, weights, 2, "--image", "nope")
    assert res.returncode != 0
    assert "maskclip project segment: error on process 0, 1 of 2: no image 'nope'" in res.stderr
    assert "segmented" not in res.stdout  # no process segmented anything: no summary of nothing
    assert "cli_project.py" not in res.stderr  # a message, not a traceback (torchrun prints its own after it)
