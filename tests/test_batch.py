"""The shared per-image batch loop (maskclip.batch) and the run-folder helpers (maskclip.run_folder), on a
stand-in project: only the public methods the loop uses."""
from __future__ import annotations

import json

import numpy as np

from maskclip.batch import FAILED, MERGED, SKIPPED, Prediction, iter_batch, run_batch
from maskclip.errors import ImageReadError
from maskclip.run_folder import MetricsTail, RunFolder, latest_run, new_run_dir, read_progress


class FakeProject:
    def __init__(self):
        self.labels = {i: np.zeros((2, 2), np.uint8) for i in ("a", "b", "c")}
        self.merges = []

    def get_labels(self, image_id):
        return self.labels[image_id].copy()

    def merge_prediction(self, image_id, labels, confidence=None, *, class_names=None, min_confidence=0.0,
                         source="prediction"):
        self.merges.append((image_id, class_names, min_confidence, source))
        self.labels[image_id] = np.asarray(labels, np.uint8)
        return self.labels[image_id]


def predict(image_id):
    if image_id == "b":
        raise ImageReadError("b.png: not an image")
    return Prediction(np.ones((2, 2), np.int32) if image_id == "a" else np.zeros((2, 2), np.int32),
                      np.ones((2, 2), np.float32), ["x", "y"], payload=image_id)


def test_batch_merges_skips_and_reports_failures():
    project, seen = FakeProject(), []
    report = run_batch(project, ["a", "b", "c", "a"], predict, source="test", min_confidence=0.2,
                       skip=lambda i: len(seen) == 3, count_changes=True,
                       on_outcome=lambda o, r: seen.append((o.image_id, o.status, o.index, o.total)))
    assert seen == [("a", MERGED, 1, 4), ("b", FAILED, 2, 4), ("c", MERGED, 3, 4), ("a", SKIPPED, 4, 4)]
    assert report.merged == ["a", "c"] and report.skipped == ["a"] and report.failed == [("b", "b.png: not an image")]
    assert report.changed_pixels == 4 and not report.cancelled
    assert project.merges == [("a", ["x", "y"], 0.2, "test"), ("c", ["x", "y"], 0.2, "test")]


def test_batch_stops_when_asked_and_only_predicts_without_merge():
    project = FakeProject()
    report = run_batch(project, ["a", "c"], predict, source="test", should_stop=lambda: True)
    assert report.cancelled and not report.merged and not project.merges
    outcomes = list(iter_batch(project, ["a"], predict, source="test", merge=False))
    assert outcomes[0].status == MERGED and outcomes[0].merged is None and outcomes[0].prediction.payload == "a"
    assert not project.merges


def test_run_folder_layout_and_readers(tmp_path):
    run = RunFolder(new_run_dir(tmp_path, now=0)).create()
    assert run.path.parent == tmp_path / "runs" and (run.path / "checkpoints").is_dir()
    assert new_run_dir(tmp_path, now=0).name == run.path.name + "-2"
    assert read_progress(run.path) is None and latest_run(tmp_path) == run.path
    run.write_progress(iteration=3, total=10, phase="guided")
    assert read_progress(run.path)["iteration"] == 3 and read_progress(run.path)["state"] == "running"
    tail = MetricsTail.of_run(run.path)
    run.append_metrics({"iteration": 1, "loss": 0.5})
    assert tail.poll() and tail.records == [{"iteration": 1, "loss": 0.5}]
    assert json.loads(run.progress.read_text())["total"] == 10 and not run.has_student()
