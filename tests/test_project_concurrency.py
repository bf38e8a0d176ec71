"""Several writers on one project (the annotator and a CLI job, two CLI jobs): nobody's verified pixels,
classes or images are lost, and every commit is a read-modify-write of the latest revision."""
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from maskclip.project import Project

H, W = 12, 16


@pytest.fixture
def root(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(src / f"{name}.png")
    Project.create(tmp_path / "proj", src, ["road", "car", "sky"], history=1000)
    return tmp_path / "proj"


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def test_editor_edit_merges_into_a_revision_committed_meanwhile(root):
    editor, job = Project.open(root), Project.open(root)
    labels, verified = editor.get_labels_and_verified("a")  # what the annotator shows
    stroke = np.zeros((H, W), bool)
    stroke[0, :4] = True
    job.merge_prediction("a", np.full((H, W), 2))  # a CLI segment lands meanwhile: all 'sky'
    other = np.zeros((H, W), bool)
    other[5, 5] = True
    job.set_labels("a", np.where(other, 1, job.get_labels("a")), verified=other)  # and someone verifies a pixel

    labels[stroke] = 0
    editor.set_labels("a", labels, verified=verified | stroke, source="annotator")
    now, now_verified = Project.open(root).get_labels_and_verified("a")
    assert (now[stroke] == 0).all() and now_verified[stroke].all()
    assert now[5, 5] == 1 and now_verified[5, 5], "the other writer's verified pixel was overwritten"
    rest = ~stroke & ~other
    assert (now[rest] == 2).all(), "the newer prediction was reverted by an edit that did not touch it"
    assert now_verified.sum() == stroke.sum() + 1

    editor.set_verified("a", np.zeros((H, W), bool))  # un-verify everything this editor holds (its stroke) ...
    now_verified = Project.open(root).get_verified("a")
    assert not now_verified[stroke].any()  # ... its choice stands for what it held,
    assert now_verified[5, 5] and now_verified.sum() == 1  # the other writer's pixel it never saw stays verified

    editor.get_labels_and_verified("a")  # once it has read the latest,
    editor.set_verified("a", np.zeros((H, W), bool))
    assert not Project.open(root).get_verified("a").any()  # un-verifying everything reaches that pixel too


def _block(r0, r1, c0, c1):
    m = np.zeros((H, W), bool)
    m[r0:r1, c0:c1] = True
    return m


def test_editor_saving_twice_from_its_own_copy_keeps_another_writers_pixels(root):
    """Issue 16.1: after a save merged another writer's commit, the editor's next save from the copy it
    holds (as the annotator's layer is) must not take the other writer's pixels for its own edits."""
    a, b = Project.open(root), Project.open(root)
    labels, verified = a.get_labels_and_verified("a")
    theirs = _block(6, 12, 8, 16)
    b.set_labels("a", np.where(theirs, 2, b.get_labels("a")), mark_changed_verified=True)  # B verifies a block
    for k, row in enumerate((0, 1)):  # A saves two strokes from its own copy, never re-reading
        labels[row, :4], verified[row, :4] = 1, True
        a.set_labels("a", labels, verified=verified, source=f"stroke {k}")
        now, now_v = Project.open(root).get_labels_and_verified("a")
        assert (now[theirs] == 2).all() and now_v[theirs].all(), f"B's block lost after A's save {k}"
        assert (now[:row + 1, :4] == 1).all() and now_v[:row + 1, :4].all()
    assert now_v.sum() == theirs.sum() + 8


def test_marking_changed_pixels_verified_marks_only_the_callers_own_changes(root):
    """Issue 16.2: a prediction merged between an editor's saves must not become 'verified' by the editor."""
    a, job = Project.open(root), Project.open(root)
    labels = a.get_labels("a")  # all unlabelled
    job.merge_prediction("a", np.full((H, W), 2))  # a segment run lands; the editor's first save merges it
    labels[0, 0] = 1
    a.set_labels("a", labels, mark_changed_verified=True)
    labels[1, 1] = 0  # the second save, from the editor's own copy
    a.set_labels("a", labels, mark_changed_verified=True)
    now, now_v = Project.open(root).get_labels_and_verified("a")
    assert now_v.sum() == 2 and now_v[0, 0] and now_v[1, 1]
    assert now[0, 0] == 1 and now[1, 1] == 0
    rest = np.ones((H, W), bool)
    rest[0, 0] = rest[1, 1] = False
    assert (now[rest] == 2).all(), "the newer prediction was reverted"


def test_an_editor_that_adopts_merged_results_passes_its_base(root):
    """The annotator adopts what a save returns (other writers' pixels appear in its layer) and passes the
    copy its next edit started from: a later prediction is not reverted by the adopted pixels."""
    a, job = Project.open(root), Project.open(root)
    labels, verified = a.get_labels_and_verified("a")
    job.merge_prediction("a", np.full((H, W), 2))
    labels[0, 0], verified[0, 0] = 1, True
    a.set_labels("a", labels, verified=verified)
    base = a.get_labels_and_verified("a")  # adopt the merged revision
    assert (base[0] == 2).sum() == H * W - 1
    job.merge_prediction("a", np.full((H, W), 0))  # a newer prediction lands
    labels, verified = base[0].copy(), base[1].copy()
    labels[3, 3], verified[3, 3] = 1, True
    a.set_labels("a", labels, verified=verified, base=base)
    now, now_v = Project.open(root).get_labels_and_verified("a")
    assert now[0, 0] == 1 and now[3, 3] == 1 and now_v.sum() == 2
    assert (now[~now_v] == 0).all(), "the newer prediction was reverted by adopted pixels"


def test_two_writers_adding_classes_keep_both(root):
    first, second = Project.open(root), Project.open(root)
    first.add_class("tree")
    second.add_class("person")  # opened before 'tree' existed: must not reuse its uid nor drop it
    p = Project.open(root)
    assert p.class_names == ["road", "car", "sky", "tree", "person"]
    assert len({c.uid for c in p.classes}) == 5
    second.update_settings({"annotator": {"last_image": "a"}})  # a stale instance's settings save keeps classes
    assert Project.open(root).class_names == ["road", "car", "sky", "tree", "person"]


def test_merge_keeps_verified_pixels_of_a_class_added_elsewhere(root):
    job = Project.open(root)  # e.g. `project segment` started before the class existed
    editor = Project.open(root)
    editor.add_class("tree")
    lab = np.full((H, W), 255, np.uint8)
    lab[:2] = editor.class_index("tree")
    editor.set_labels("a", lab, verified=lab != 255)
    job.merge_prediction("a", np.zeros((H, W), np.int64))
    p = Project.open(root)
    labels, verified = p.get_labels_and_verified("a")
    assert (labels[:2] == p.class_index("tree")).all() and verified[:2].all() and not verified[2:].any()
    assert (labels[2:] == 0).all()


def test_edit_keeps_verified_pixels_of_a_class_it_does_not_know(root):
    editor = Project.open(root)  # the annotator, opened before another process adds a class
    job = Project.open(root)
    job.add_class("tree")
    lab = np.full((H, W), 255, np.uint8)
    lab[:2] = job.class_index("tree")
    job.set_labels("a", lab, verified=lab != 255)  # e.g. import-labels --verified
    labels, verified = editor.get_labels_and_verified("a")  # 'tree' pixels read as unlabelled here
    labels[5, 5], verified[5, 5] = 0, True
    editor.set_labels("a", labels, verified=verified)
    editor.set_verified("a", verified)
    p = Project.open(root)
    labels, verified = p.get_labels_and_verified("a")
    assert (labels[:2] == p.class_index("tree")).all() and verified[:2].all()
    assert labels[5, 5] == 0 and verified[5, 5] and verified.sum() == 2 * W + 1


def test_two_processes_adding_images_get_distinct_ids(root, tmp_path):
    more = tmp_path / "more"
    more.mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(more / "a.png")
    first, second = Project.open(root), Project.open(root)
    first.add_images(more / "a.png")
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.ones((H, W, 3), np.uint8)).save(other / "a.png")
    second.add_images(other / "a.png")
    assert Project.open(root).image_ids == ["a", "b", "a-2", "a-3"]


BLOCKED_EDITOR = textwrap.dedent("""
    import sys, numpy as np
    from maskclip.project import Project
    p = Project.open(sys.argv[1])
    labels, verified = p.get_labels_and_verified("a")
    print("ready", flush=True)
    sys.stdin.readline()
    labels[0, 0] = 0
    verified[0, 0] = True
    p.set_labels("a", labels, verified=verified, source="annotator")
    print("saved", flush=True)
""")


def test_editor_in_another_process_waits_for_a_merge_in_flight(root, tmp_path, monkeypatch):
    """The merge holds the image's lock from its read to its commit: the editor's save lands after it and
    merges into it, instead of being overwritten by it."""
    script = tmp_path / "editor.py"
    script.write_text(BLOCKED_EDITOR)
    editor = subprocess.Popen([sys.executable, str(script), str(root)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert editor.stdout.readline().strip() == "ready"
        job = Project.open(root)
        real = Project._uid_labels
        started = []

        def read_then_let_editor_save(self, image_id, entry, shape):
            out = real(self, image_id, entry, shape)
            if self is job and not started:
                started.append(time.time())
                editor.stdin.write("go\n")
                editor.stdin.flush()
                time.sleep(1.0)  # without the lock the editor's save would land right here
            return out

        monkeypatch.setattr(Project, "_uid_labels", read_then_let_editor_save)
        job.merge_prediction("a", np.full((H, W), 2))
        assert editor.stdout.readline().strip() == "saved"
        assert editor.wait(timeout=60) == 0
    finally:
        if editor.poll() is None:
            editor.kill()
    monkeypatch.undo()
    p = Project.open(root)
    labels, verified = p.get_labels_and_verified("a")
    assert labels[0, 0] == 0 and verified[0, 0] and verified.sum() == 1
    assert (labels.ravel()[1:] == 2).all()
    assert [h["source"] for h in p.history("a")] == ["prediction", "annotator"]


SEGMENT_LOOP = textwrap.dedent("""
    import contextlib, io, sys
    from pathlib import Path
    from maskclip.cli import main
    root, stop = sys.argv[1], Path(sys.argv[2])
    n = 0
    while not stop.exists():
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["project", "segment", root, "--device", "cpu"])
        assert code == 0, code
        n += 1
        print(n, flush=True)
""")


def test_annotator_and_cli_segment_lose_no_verified_commit(tmp_path):
    """The issue's stress test: an annotator-like writer (this process) commits 150 verified strokes while
    `maskclip project segment` runs in a loop in another process. Every stroke stays verified in every
    later revision, and all 150 commits are in the history."""
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (192, 256, 3), dtype=np.uint8)).save(src / f"{name}.png")
    root = tmp_path / "proj"
    Project.create(root, src, ["red", "blue"], history=10000,
                   settings={"model": {"name": "maskclip-tiny-vit", "pretrained": None}, "method": {"scales": [32]}})
    stop = tmp_path / "stop"
    script = tmp_path / "segment_loop.py"
    script.write_text(SEGMENT_LOOP)
    cli = subprocess.Popen([sys.executable, str(script), str(root), str(stop)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=_env())
    commits = 150
    try:
        assert cli.stdout.readline().strip() == "1", "the segment loop failed"  # it runs: now overlap it
        editor = Project.open(root)
        layers = {i: list(editor.get_labels_and_verified(i)) for i in editor.image_ids}  # what napari shows
        strokes = {i: [] for i in editor.image_ids}
        for k in range(commits):
            image_id = editor.image_ids[k % 2]
            labels, verified = layers[image_id]
            y, x = divmod(k // 2, 32)
            labels[y, x] = k % 2
            verified[y, x] = True
            editor.set_labels(image_id, labels, verified=verified, source=f"annotator {k}")
            strokes[image_id].append((k, y, x))
        stop.touch()
        out, err = cli.communicate(timeout=120)
    finally:
        stop.touch()
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, err
    cli_runs = int(out.split()[-1]) if out.split() else 1

    p = Project.open(root)
    lost, annotator_revs, cli_revs = [], 0, 0
    for image_id in p.image_ids:
        done = []  # strokes committed so far, in this image's revision order
        by_k = {k: (y, x) for k, y, x in strokes[image_id]}
        for h in p.history(image_id):
            labels, verified = p.get_revision(image_id, h["rev"])
            if h["source"].startswith("annotator"):
                annotator_revs += 1
                done.append(int(h["source"].split()[1]))
            else:
                cli_revs += 1
            for k in done:
                y, x = by_k[k]
                if not (verified[y, x] and labels[y, x] == k % 2):
                    lost.append((image_id, h["rev"], k))
    print(f"stress: {commits} annotator commits, {cli_runs} CLI segment runs ({cli_revs} CLI revisions), "
          f"{len(lost)} lost verified strokes")
    assert annotator_revs == commits
    assert cli_revs >= 2, "the CLI job did not overlap the annotator's commits"
    assert not lost, f"verified strokes lost in later revisions: {lost[:5]}"
