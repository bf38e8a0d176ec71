"""Crash safety of the project store: a killed save, a full disk or a permission error never leaves a
half-written or inconsistent project."""
import errno
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskclip.errors import MaskCLIPError
from maskclip.export import export_project
from maskclip.project import Project

H, W, K = 12, 16, 4

LOOP = textwrap.dedent("""
    import sys
    import numpy as np
    from maskclip.project import Project

    p = Project.open(sys.argv[1])
    H, W, K = 12, 16, 4
    rows = np.arange(H)[:, None] * np.ones((1, W), int)
    k = int(p.settings.get("counter", 0))
    while True:
        k += 1
        for image_id in p.image_ids:  # labels value v <-> first v+1 rows verified: one revision's pair
            v = k % K
            p.set_labels(image_id, np.full((H, W), v, np.uint8), verified=rows <= v, source=f"loop{k}")
        p.rename_class(p.class_names[0], "c0" if p.class_names[0] == "c0-renamed" else "c0-renamed")
        p.update_settings({"counter": k})
        print(k, flush=True)
""")


def _check_consistent(root: Path) -> None:
    p = Project.open(root)  # project.json and images.json parse
    assert p.class_names[0] in ("c0", "c0-renamed") and p.class_names[1:] == ["c1", "c2", "c3"]
    for image_id in p.image_ids:
        state = json.loads((root / "annotations" / image_id / "state.json").read_text())
        labels, verified = p.get_labels_and_verified(image_id)
        values = np.unique(labels)
        assert len(values) == 1 and values[0] < K
        v = int(values[0])
        assert verified[: v + 1].all() and not verified[v + 1:].any(), "labels and mask from different saves"
        assert sum(state["counts"].values()) == H * W
        assert sum(state["verified_counts"].values()) == (v + 1) * W
        for entry in state["history"]:  # every revision the state names is complete and readable
            old, _ = p.get_revision(image_id, entry["rev"])
            assert old.shape == (H, W)
        s = p.image_state(image_id)
        assert s.labelled_pixels == H * W and s.verified_pixels == (v + 1) * W


def test_killed_mid_save_leaves_consistent_project(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((H, W, 3), 7, np.uint8)).save(src / f"{name}.png")
    root = tmp_path / "proj"
    Project.create(root, src, [f"c{i}" for i in range(K)])
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    rng = random.Random(0)
    for round_ in range(4):
        proc = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            for _ in range(2 + round_):
                line = proc.stdout.readline()
                assert line, "save loop died before it was killed"
            time.sleep(rng.uniform(0.0, 0.05))  # land somewhere inside a save
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        _check_consistent(root)


@pytest.fixture
def project(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.full((H, W, 3), 9, np.uint8)).save(src / "a.png")
    Image.fromarray(np.full((H, W, 3), 3, np.uint8)).save(src / "b.png")
    p = Project.create(tmp_path / "proj", src, [f"c{i}" for i in range(K)])
    p.set_labels("a", np.full((H, W), 1, np.uint8), verified=np.ones((H, W), bool))
    return p


def _files(folder: Path) -> dict[str, bytes]:
    """Every data file (empty lock files, which inter-process locking creates, are not data)."""
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*"))
            if f.is_file() and not f.name.endswith(".lock")}


def _fail_on(monkeypatch, target_name: str, err: int):
    """Make the rename of any file whose destination name contains target_name fail with errno err."""
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if target_name in os.path.basename(os.fspath(dst)):
            raise OSError(err, os.strerror(err))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("target", [".labels.png", ".verified.png", "state.json"])
@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES])
def test_failed_label_save_keeps_previous_revision(project, monkeypatch, target, err):
    before = _files(project.root)
    _fail_on(monkeypatch, target, err)
    with pytest.raises(MaskCLIPError, match="no space left|permission denied") as info:
        project.set_labels("a", np.full((H, W), 2, np.uint8), verified=np.ones((H, W), bool))
    assert "cannot write" in str(info.value)
    monkeypatch.undo()
    assert _files(project.root) == before  # nothing half-written, no orphan, no temporary file
    reopened = Project.open(project.root)
    assert (reopened.get_labels("a") == 1).all() and reopened.get_verified("a").all()


def test_full_disk_at_flush_time(project, monkeypatch):
    before = _files(project.root)

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(MaskCLIPError, match="no space left"):
        project.merge_prediction("b", np.zeros((H, W), np.int64))
    with pytest.raises(MaskCLIPError, match="no space left"):
        project.add_class("new")
    with pytest.raises(MaskCLIPError, match="no space left"):
        project.reorder_classes(["c3", "c2", "c1", "c0"])
    assert project.class_names == [f"c{i}" for i in range(K)]  # memory still matches the disk
    monkeypatch.undo()
    assert _files(project.root) == before
    project.add_class("new")
    assert Project.open(project.root).class_names == [f"c{i}" for i in range(K)] + ["new"]


def test_permission_error_creating_annotation_folder(project, monkeypatch):
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.parent.name == "annotations":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(MaskCLIPError, match="cannot create folder .*Permission denied"):
        project.set_labels("b", np.zeros((H, W), np.uint8))


def test_create_in_unwritable_place_is_a_clear_error(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.zeros((H, W), np.uint8)).save(src / "a.png")
    _fail_on(monkeypatch, "images.json", errno.EROFS)
    with pytest.raises(MaskCLIPError, match="read-only file system"):
        Project.create(tmp_path / "proj", src, ["x"])
    monkeypatch.undo()
    assert not (tmp_path / "proj" / "project.json").exists()  # not a (broken) project


def test_export_full_disk_leaves_no_partial_file(project, tmp_path, monkeypatch):
    _fail_on(monkeypatch, "annotations.json", errno.ENOSPC)
    with pytest.raises(MaskCLIPError, match="no space left"):
        export_project(project, tmp_path / "out", "coco")
    monkeypatch.undo()
    out = tmp_path / "out"
    assert not (out / "annotations.json").exists()
    assert not [f for f in out.rglob("*") if f.name.endswith(".tmp")]


def test_failed_image_import_keeps_memory_and_disk_in_step(project, tmp_path, monkeypatch):
    more = tmp_path / "more"
    more.mkdir()
    Image.fromarray(np.zeros((H, W), np.uint8)).save(more / "new.png")
    _fail_on(monkeypatch, "images.json", errno.ENOSPC)
    with pytest.raises(MaskCLIPError, match="no space left"):
        project.add_images(more)
    monkeypatch.undo()
    assert project.image_ids == ["a", "b"] == Project.open(project.root).image_ids
    assert project.add_images(more).added == ["new"]
    assert Project.open(project.root).image_ids == ["a", "b", "new"]
