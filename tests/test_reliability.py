"""Bad input must never escape the project, run code, pass unchecked, stop a batch or leave debris
(issue 12: path escapes, unsafe checkpoints, option ranges, clear errors, bad items, leftovers)."""
import errno
import json
import os
import time

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from maskclip.cli import main
from maskclip.errors import MaskCLIPError
from maskclip.export import ExportError, export_project, open_labels
from maskclip.project import Project, ProjectError

H, W = 12, 16
TINY = ["--model", "maskclip-tiny-vit", "--pretrained", "none", "--scales", "32", "--device", "cpu"]


def _image(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), value, np.uint8)).save(path)


@pytest.fixture
def proj(tmp_path):
    for name, v in (("a", 10), ("b", 200)):
        _image(tmp_path / "src" / f"{name}.png", v)
    p = Project.create(tmp_path / "proj", tmp_path / "src", ["road", "car"])
    p.set_labels("a", np.zeros((H, W), np.uint8), verified=np.ones((H, W), bool))
    p.set_labels("b", np.ones((H, W), np.uint8), verified=np.arange(H)[:, None] * np.ones((1, W)) == 0)
    return p


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# --- 2. path escapes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_id", ["../../x", "a/b", "..", ".hidden", ""])
def test_tampered_image_id_is_refused_before_anything_is_written(proj, tmp_path, capsys, bad_id):
    victim = tmp_path / "x"
    victim.mkdir()
    (victim / "keep.txt").write_text("unrelated")
    _edit_json(proj.root / "images.json", lambda d: d["images"][0].update(id=bad_id))
    with pytest.raises(ProjectError, match="images.json.*not a plain file name"):
        Project.open(proj.root)
    assert main(["project", "segment", str(proj.root), *TINY]) == 2
    assert main(["export", str(proj.root), "--format", "index", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 2
    assert [f.name for f in victim.iterdir()] == ["keep.txt"] and not (tmp_path / "out").exists()


def test_image_file_outside_the_project_is_refused(proj):
    _edit_json(proj.root / "images.json", lambda d: d["images"][0].update(file="../../etc/passwd"))
    with pytest.raises(ProjectError, match="outside the project"):
        Project.open(proj.root)


def test_state_file_names_outside_the_folder_are_refused_and_unrelated_files_kept(proj):
    folder = proj.root / "annotations" / "b"
    notes = folder / "notes.txt"
    notes.write_text("mine")
    old = time.time() - 3600
    os.utime(notes, (old, old))
    proj.set_labels("b", np.zeros((H, W), np.uint8))  # a commit prunes old leftovers: only its own files
    assert notes.read_text() == "mine"
    _edit_json(folder / "state.json", lambda d: d.update(labels="../a/../../images.json"))
    with pytest.raises(ProjectError, match="state.json: malformed label state"):
        Project.open(proj.root).get_labels("b")


# --- 3. checkpoints ------------------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _run_with_student(tmp_path, record):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save(record, run / "student.pt")
    torch.save(record, run / "checkpoints" / "last.pt")
    (run / "config.json").write_text('{"train": {}}')  # --resume needs the run's configuration (issue 16, item 7)
    return run


def test_checkpoint_with_a_pickle_payload_is_not_executed(proj, tmp_path, capsys):
    marker = tmp_path / "pwned"
    run = _run_with_student(tmp_path, {"model": {}, "student": {}, "x": _Payload(str(marker))})
    assert main(["refine", str(proj.root), "--run", str(run), "--device", "cpu"]) == 2
    assert main(["train", str(proj.root), "--run", str(run), "--resume", "--iters", "1", "--device", "cpu",
                 "--model", "maskclip-tiny-vit", "--pretrained", "none"]) == 2
    err = capsys.readouterr().err
    assert not marker.exists(), "the checkpoint ran code"
    assert err.count("holds objects other than weights") == 2 and "Traceback" not in err


def test_truncated_checkpoint_is_a_clear_error(proj, tmp_path, capsys):
    run = _run_with_student(tmp_path, {"model": {"w": torch.zeros(1000)}, "student": {"name": "x"}})
    data = (run / "student.pt").read_bytes()
    (run / "student.pt").write_bytes(data[: len(data) // 2])
    assert main(["refine", str(proj.root), "--run", str(run), "--device", "cpu"]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err


# --- 4. option ranges ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["project", "segment", "{p}", "--min-confidence", "nan"], "--min-confidence must lie in [0, 1]"),
    (["project", "segment", "{p}", "--pd-threshold", "-0.1"], "--pd-threshold must lie in [0, 1]"),
    (["project", "segment", "{p}", "--device", "tpu9"], "unknown device 'tpu9'"),
    (["refine", "{p}", "--run", "{p}/run", "--min-confidence", "5"], "--min-confidence must lie in [0, 1]"),
    (["train", "{p}", "--run", "{p}/run", "--lr", "-1"], "--lr must be a positive finite number"),
    (["train", "{p}", "--run", "{p}/run", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["train", "{p}", "--run", "{p}/run", "--device", "mps"], "'mps' (Apple GPU) is not available"),
    (["train", "{p}", "--run", "{p}/run", "--guided-fraction", "inf"], "--guided-fraction must lie in [0, 1]"),
    (["export", "{p}", "--format", "voc", "--out", "{p}/o", "--val-fraction", "2"], "--val-fraction must lie"),
])
def test_out_of_range_options_are_refused_before_any_work(proj, capsys, argv, message):
    before = {i: proj.get_labels(i) for i in proj.image_ids}
    with pytest.raises(SystemExit) as exc:
        main([a.format(p=proj.root) for a in argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    for image_id, labels in before.items():
        np.testing.assert_array_equal(Project.open(proj.root).get_labels(image_id), labels)


def test_api_ranges(proj):
    from maskclip.train.loop import TrainConfig

    with pytest.raises(MaskCLIPError, match=r"min_confidence must lie in \[0, 1\]"):
        proj.merge_prediction("b", np.zeros((H, W), int), np.ones((H, W)), min_confidence=float("nan"))
    with pytest.raises(MaskCLIPError, match="--batch-size must be at least 1"):
        TrainConfig(batch_size=0).validate()
    with pytest.raises(MaskCLIPError, match="--lr must be a positive"):
        TrainConfig(lr=float("nan")).validate()
    import maskclip

    with pytest.raises(MaskCLIPError, match="unknown device"):
        maskclip.load("maskclip-tiny-vit", None, device="tpu9")


def test_segment_refuses_more_than_254_classes_plus_background_up_front(tmp_path, capsys):
    _image(tmp_path / "in" / "x.png")
    classes = tmp_path / "classes.txt"
    classes.write_text("".join(f"class{i}\n" for i in range(255)))
    assert main(["segment", str(tmp_path / "in"), "--classes-file", str(classes), "--out", str(tmp_path / "out"),
                 *TINY]) == 2
    assert "at most 254 classes plus background" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- 5. clear errors -----------------------------------------------------------------------------------------
def test_non_utf8_classes_file(tmp_path, capsys):
    _image(tmp_path / "in" / "x.png")
    classes = tmp_path / "classes.txt"
    classes.write_bytes(b"caf\xe9\n")
    assert main(["segment", str(tmp_path / "in"), "--classes-file", str(classes), "--out", str(tmp_path / "o"),
                 *TINY]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


@pytest.mark.parametrize("file, change, message", [
    ("project.json", lambda d: d.update(classes={"a": 1}), "project.json: malformed project file"),
    ("project.json", lambda d: d["classes"][0].pop("uid"), "project.json: malformed project file"),
    ("project.json", lambda d: d.update(next_uid=0), "next_uid"),
    ("images.json", lambda d: d["images"][0].update(height="12"), "images.json: malformed image list"),
    ("images.json", lambda d: d.update(images=None), "images.json: malformed image list"),
])
def test_malformed_project_files_name_the_file(proj, capsys, file, change, message):
    _edit_json(proj.root / file, change)
    assert main(["project", "status", str(proj.root)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_malformed_state_is_reported_by_status_and_skipped_by_batches(proj, tmp_path, capsys):
    (proj.root / "annotations" / "b" / "state.json").write_text('{"rev": "x"}')
    assert main(["project", "status", str(proj.root)]) == 1
    assert "broken labels: b:" in capsys.readouterr().out
    assert main(["export", str(proj.root), "--format", "index", "--out", str(tmp_path / "out")]) == 1
    out, err = capsys.readouterr()
    assert "exported 1 images" in out and "skipped b:" in err and (tmp_path / "out" / "a.png").is_file()
    proj.clear_labels("b")  # starts the image over
    assert Project.open(proj.root).broken_images() == []


def test_read_only_project_gives_a_clear_error(proj, monkeypatch, capsys):
    real_open = os.open
    root = str(proj.root)

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(root) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    p = Project.open(proj.root)
    assert p.get_labels("a").shape == (H, W)  # reading works
    with pytest.raises(MaskCLIPError, match="read-only|permission denied"):
        p.merge_prediction("b", np.zeros((H, W), int))
    with pytest.raises(MaskCLIPError, match="read-only|permission denied"):
        p.add_class("tree")
    with pytest.warns(UserWarning, match="feature cache entry not written"):
        assert main(["project", "segment", str(proj.root), *TINY]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "read-only" in err


# --- 6. one bad item never stops a batch ---------------------------------------------------------------------
def test_segment_skips_a_five_channel_tiff(tmp_path, capsys):
    _image(tmp_path / "in" / "good.png")
    tifffile.imwrite(tmp_path / "in" / "bad.tif", np.zeros((H, W, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    os.mkfifo(tmp_path / "in" / "pipe.png")
    (tmp_path / "in" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    classes = tmp_path / "classes.txt"
    classes.write_text("road\ncar\n")
    assert main(["segment", str(tmp_path / "in"), "--classes-file", str(classes), "--out", str(tmp_path / "out"),
                 *TINY]) == 1
    err = capsys.readouterr().err
    assert "bad.tif" in err and "pipe.png: not a regular file" in err and "gone.png: broken symbolic link" in err
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["classes.json", "good.png"]


def test_project_init_reports_skipped_files_and_exits_1(tmp_path, capsys):
    _image(tmp_path / "in" / "good.png")
    tifffile.imwrite(tmp_path / "in" / "bad.tif", np.zeros((H, W, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    os.mkfifo(tmp_path / "in" / "pipe.jpg")
    assert main(["project", "init", str(tmp_path / "p"), "--images", str(tmp_path / "in")]) == 1
    err = capsys.readouterr().err
    assert "bad.tif: unsupported image shape" in err and "pipe.jpg: not a regular file" in err
    assert Project.open(tmp_path / "p").image_ids == ["good"]


def test_corrupt_label_file_is_skipped_and_reported(proj, tmp_path, capsys):
    state = json.loads((proj.root / "annotations" / "a" / "state.json").read_text())
    (proj.root / "annotations" / "a" / state["labels"]).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["project", "status", str(proj.root), "--json"]) == 1
    broken = json.loads(capsys.readouterr().out)["broken"]
    assert [b["id"] for b in broken] == ["a"] and "truncated" in broken[0]["problem"]
    assert main(["project", "segment", str(proj.root), *TINY]) == 1
    out, err = capsys.readouterr()
    assert "segmented 1 images" in out and "1 failed: a" in out and "skipped a: labels of image 'a'" in err
    assert Project.open(proj.root).history("b")[-1]["source"].startswith("maskclip")
    assert main(["export", str(proj.root), "--format", "voc", "--out", str(tmp_path / "voc")]) == 1
    assert "exported 1 images" in capsys.readouterr().out


def test_import_labels_says_when_matched_files_were_invalid(proj, tmp_path, capsys):
    labels = tmp_path / "labels"
    labels.mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(labels / "a.png")  # RGB: not class indices
    assert main(["project", "import-labels", str(proj.root), str(labels)]) == 2
    err = capsys.readouterr().err
    assert "matched images of the project but none could be imported" in err and "no label file matched" not in err
    Image.fromarray(np.zeros((H, W), np.uint8)).save(labels / "b.png")
    assert main(["project", "import-labels", str(proj.root), str(labels)]) == 1
    with pytest.raises(ExportError, match="single file but not a COCO"):
        open_labels(labels / "b.png")


# --- 7. leftovers --------------------------------------------------------------------------------------------
def test_leftover_temp_files_are_removed(proj, tmp_path):
    old = time.time() - 3600
    stale = proj.root / ".project.json.0123456789ab.tmp"
    fresh = proj.root / ".images.json.ba9876543210.tmp"  # may be another process's write in progress
    mine = proj.root / ".notes.tmp"  # not a name atomic_write makes
    for f in (stale, fresh, mine):
        f.write_bytes(b"x")
    os.utime(stale, (old, old))
    os.utime(mine, (old, old))
    image_tmp = proj.root / "annotations" / "b" / ".state.json.0123456789ab.tmp"
    image_tmp.write_bytes(b"x")
    Project.open(proj.root)
    assert not stale.exists() and fresh.exists() and mine.exists()
    proj.set_labels("b", np.zeros((H, W), np.uint8))  # under the image's lock no save of it is in flight
    assert not image_tmp.exists()

    from maskclip.train.loop import RunFolder

    ckpt_tmp = tmp_path / "run" / "checkpoints" / ".last.pt.0123456789ab.tmp"
    ckpt_tmp.parent.mkdir(parents=True)
    ckpt_tmp.write_bytes(b"\0" * 1000)
    RunFolder(tmp_path / "run").create()  # what a (resumed) training run does first
    assert not ckpt_tmp.exists()


def test_failed_init_leaves_no_half_project(tmp_path, monkeypatch):
    import maskclip.project.files as mod  # the store writes every JSON file through it

    _image(tmp_path / "src" / "a.png")
    real = mod.write_json

    def full_disk(path, data):
        if path.name == "project.json":
            raise mod.FileWriteError(f"cannot write {path}: no space left on device")
        real(path, data)

    monkeypatch.setattr(mod, "write_json", full_disk)
    with pytest.raises(MaskCLIPError, match="no space left"):
        Project.create(tmp_path / "new", tmp_path / "src", ["road"])
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".keep").write_text("user's")
    with pytest.raises(MaskCLIPError, match="no space left"):
        Project.create(tmp_path / "empty", tmp_path / "src", ["road"])
    assert [f.name for f in (tmp_path / "empty").iterdir()] == [".keep"]

    # a create killed part-way (no cleanup ran): open says so, init again cleans up and succeeds
    monkeypatch.setattr(mod, "remove_unfinished", lambda root: None)
    monkeypatch.setattr(mod.shutil, "rmtree", lambda *a, **k: None)
    with pytest.raises(MaskCLIPError):
        Project.create(tmp_path / "killed", tmp_path / "src", ["road"])
    monkeypatch.undo()
    assert (tmp_path / "killed" / "images.json").exists()
    with pytest.raises(ProjectError, match="did not finish"):
        Project.open(tmp_path / "killed")
    assert Project.create(tmp_path / "killed", tmp_path / "src", ["road"]).image_ids == ["a"]


def test_export_never_writes_outside_out(proj, tmp_path):
    report = export_project(Project.open(proj.root), tmp_path / "out", "index")
    written = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")}
    assert report.exported == ["a", "b"] and written == {"a.png", "b.png", "classes.json"}
