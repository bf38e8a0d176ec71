"""Reliability round 3 (issue 16, items 3, 6, 9, 11): outputs never land on user files, COCO input is
validated before pycocotools sees it, a failed cache or checkpoint write is a clear error, small input fixes."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskclip.cli import main
from maskclip.errors import MaskCLIPError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
TINY = ["--model", "maskclip-tiny-vit", "--pretrained", "none", "--device", "cpu", "--scales", "32"]


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / "b.jpg")
    return folder


@pytest.fixture
def classes_file(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("road\ncar\n")
    return path


def _segment(inputs, classes_file, out, *extra):
    return main(["segment", *map(str, inputs), "--classes-file", str(classes_file), "--out", str(out), *TINY, *extra])


def _small_project(tmp_path, copy=True):
    from maskclip.project import Project

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(src / "img.png")
    project = Project.create(tmp_path / "proj", src, ["road", "car"], copy=copy)
    project.set_labels("img", np.ones((12, 16), np.uint8))
    return project


# ---------------------------------------------------------------------------------------------- item 3
def test_segment_refuses_out_that_is_the_input_folder(photos, classes_file, capsys):
    before = (photos / "a.png").read_bytes()
    assert _segment([photos], classes_file, photos) == 2
    err = capsys.readouterr().err
    assert "is the input" in err and "Traceback" not in err
    assert (photos / "a.png").read_bytes() == before and not (photos / "classes.json").exists()


def test_segment_refuses_out_inside_or_holding_an_input(photos, classes_file, tmp_path, capsys):
    assert _segment([photos], classes_file, photos / "labels") == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert _segment([photos / "a.png"], classes_file, tmp_path) == 2
    assert "holds the input" in capsys.readouterr().err


def test_segment_refuses_out_inside_a_project(photos, classes_file, tmp_path, capsys):
    project = _small_project(tmp_path)
    assert _segment([photos], classes_file, project.root / "images") == 2
    assert "inside the annotation project" in capsys.readouterr().err


def test_segment_replaces_existing_files_only_with_overwrite(photos, classes_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"the user's own file")
    assert _segment([photos], classes_file, out) == 2
    err = capsys.readouterr().err
    assert "already holds a.png" in err and "--overwrite" in err
    assert (out / "a.png").read_bytes() == b"the user's own file"
    assert _segment([photos], classes_file, out, "--overwrite") == 0
    assert np.array(Image.open(out / "a.png")).shape == (20, 24)


def test_export_refuses_the_project_folder_even_with_overwrite(tmp_path):
    from maskclip.export import ExportError, export_project

    project = _small_project(tmp_path)
    image = project.image_path("img")
    before = image.read_bytes()
    for out in (project.root / "images", project.root, project.root / "new"):
        with pytest.raises(ExportError, match="inside the annotation project"):
            export_project(project, out, "index", overwrite=True)
    assert image.read_bytes() == before


def test_export_refuses_the_folder_of_referenced_images(tmp_path, capsys):
    project = _small_project(tmp_path, copy=False)
    image = project.image_path("img")
    before = image.read_bytes()
    assert main(["export", str(project.root), "--format", "index", "--out", str(image.parent), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "holds the input" in err and "Traceback" not in err
    assert image.read_bytes() == before
    assert main(["export", str(project.root), "--format", "index", "--out", str(tmp_path / "exp")]) == 0


def test_train_refuses_a_run_folder_that_is_not_a_run(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json").write_text('{"mine": true}')
    assert main(["train", str(tmp_path / "no-project"), "--run", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "not a training run" in err and "Traceback" not in err
    assert (folder / "config.json").read_text() == '{"mine": true}'
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    assert main(["train", str(tmp_path / "no-project"), "--run", str(other)]) == 2


def test_run_folder_recognition():
    from maskclip.outputs import is_run_folder

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "annotator.json").write_text('{"train": []}')  # what the annotator writes before starting train
        assert is_run_folder(d)
        (d / "progress.json").write_text('{"iteration": 0, "state": "running"}')
        (d / "teacher").mkdir()
        assert is_run_folder(d)
        (d / "config.json").write_text('{"train": {"iters": 4}, "classes": []}')
        (d / "notes.txt").write_text("a user's note in a real run")
        assert is_run_folder(d)
        (d / "config.json").write_text('{"something": "else"}')
        assert not is_run_folder(d)


# ---------------------------------------------------------------------------------------------- item 6
def _coco_file(tmp_path, annotation: dict | None = None, image: dict | None = None) -> Path:
    data = {
        "images": [{"id": 1, "file_name": "img.png", "height": 12, "width": 16, **(image or {})}],
        "categories": [{"id": 1, "name": "road"}, {"id": 2, "name": "car"}],
        "annotations": [{"id": 9, "image_id": 1, "category_id": 2, "iscrowd": 0,
                         "segmentation": [[1, 1, 8, 1, 8, 6, 1, 6]], **(annotation or {})}],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("annotation,image,message", [
    ({"segmentation": [[1e9, 1e9, -1e9, 1e9, 1e9, -1e9]]}, None, "far outside"),
    ({"segmentation": [[1, 1, 8, 1, float("nan"), 6]]}, None, "non-finite"),
    ({"segmentation": [[1, 1, 8]]}, None, "at least 3 points"),
    ({"segmentation": 5}, None, "list of polygons or an RLE"),
    ({"segmentation": {"size": [12, 16], "counts": "@@@@"}}, None, "RLE counts string"),
    ({"segmentation": {"size": [12, 16], "counts": "\x01\x02"}}, None, "RLE counts string"),
    ({"segmentation": {"size": [12, 16], "counts": [5, -3, 190]}}, None, "non-negative integers"),
    ({"segmentation": {"size": [12, 16], "counts": [5, 3]}}, None, "summing to 192"),
    ({"segmentation": {"size": [1 << 20, 1 << 20], "counts": [1]}}, None, "does not match"),
    ({"category_id": 77}, None, "category_id 77"),
    (None, {"height": -12}, "positive integers"),
    (None, {"height": 1 << 20, "width": 1 << 20}, "too large"),
])
def test_bad_coco_annotations_are_refused_by_name(tmp_path, annotation, image, message):
    from maskclip.export import ExportError, open_labels

    path = _coco_file(tmp_path, annotation, image)
    labels = open_labels(path)
    with pytest.raises(ExportError, match=message) as info:
        labels.read("img")
    assert str(path) in str(info.value) and "img.png" in str(info.value)
    if annotation:
        assert "annotation 9" in str(info.value)


def test_valid_coco_rle_string_still_reads(tmp_path):
    from pycocotools import mask as mask_util

    from maskclip.export import open_labels

    mask = np.zeros((12, 16), np.uint8)
    mask[2:7, 3:11] = 1
    counts = mask_util.encode(np.asfortranarray(mask))["counts"].decode("ascii")
    path = _coco_file(tmp_path, {"segmentation": {"size": [12, 16], "counts": counts}})
    labels = open_labels(path).read("img")
    assert (labels[2:7, 3:11] == 1).all() and (labels == 1).sum() == 40 and labels[0, 0] == 255


def test_import_labels_skips_a_bad_coco_image_in_a_subprocess(tmp_path):
    """The pycocotools crash (exit 139) needs a separate process to be seen."""
    import os
    import subprocess
    import sys

    project = _small_project(tmp_path)
    path = _coco_file(tmp_path, {"segmentation": [[1e9, 1e9, -1e9, 1e9, 1e9, -1e9, 5, 5]]})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                       os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-m", "maskclip", "project", "import-labels", str(project.root), str(path)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2, res.stderr
    assert "far outside" in res.stderr and "Traceback" not in res.stderr


def test_malformed_coco_files_are_one_error(tmp_path):
    from maskclip.export import ExportError, open_labels

    for data in ([], {"images": 5, "annotations": [], "categories": []},
                 {"images": [], "annotations": [{"id": 1, "image_id": 3}], "categories": []},
                 {"images": [], "annotations": [], "categories": [{"id": "x", "name": "a"}]}):
        (tmp_path / "c.json").write_text(json.dumps(data))
        with pytest.raises(ExportError, match="not a readable COCO"):
            open_labels(tmp_path / "c.json")


# ---------------------------------------------------------------------------------------------- item 9
def _efbig(*args, **kwargs):
    raise OSError(errno.EFBIG, "File too large")


def _writer_failed(*args, **kwargs):
    raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0 "
                       "PytorchStreamWriter failed writing file data/0: file write failed")


@pytest.mark.parametrize("fail", [_efbig, _writer_failed])
def test_failed_cache_write_is_a_warning_and_leaves_no_temporary(tmp_path, monkeypatch, fail):
    import torch

    from maskclip.cache import FeatureCache

    cache = FeatureCache({"model": "x"}, disk_dir=tmp_path / "cache")
    monkeypatch.setattr(torch, "save", fail)
    with pytest.warns(UserWarning, match="feature cache entry not written") as record:
        cache.put("img", {"f": torch.zeros(2, 3)})
    message = str(record[0].message)
    assert "cannot write" in message and "enforce fail" not in message
    assert list((tmp_path / "cache").iterdir()) == []
    assert cache.get("img") is not None  # the result itself is kept in memory


def test_stale_cache_temporaries_are_removed(tmp_path):
    import os
    import time

    from maskclip.cache import FeatureCache

    folder = tmp_path / "cache"
    folder.mkdir()
    old, fresh = folder / "tmpabc123.tmp", folder / "tmpdef456.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    FeatureCache({"model": "x"}, disk_dir=folder)
    assert not old.exists() and fresh.exists()


@pytest.mark.parametrize("fail", [_efbig, _writer_failed])
def test_failed_checkpoint_write_is_a_clear_error(tmp_path, monkeypatch, fail):
    import torch

    from maskclip.atomic import FileWriteError
    from maskclip.train.loop import _save

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(FileWriteError, match="cannot write .*last.pt: (file too large|the write failed)"):
        _save(tmp_path / "last.pt", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_failed_clip_checkpoint_write_is_a_clear_error(tmp_path, monkeypatch, tiny_vit):
    import torch

    from maskclip.atomic import FileWriteError

    monkeypatch.setattr(torch, "save", _writer_failed)
    with pytest.raises(FileWriteError, match="the write failed"):
        tiny_vit.save_checkpoint(tmp_path / "w.pt")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- item 11
def test_utf8_bom_is_not_part_of_the_first_class_name(tmp_path):
    from maskclip.labels_io import read_classes_json
    from maskclip.prompts import parse_classes_file, read_classes_file

    (tmp_path / "c.txt").write_bytes("\ufeffroad\ncar, automobile\n".encode("utf-8"))
    assert parse_classes_file(tmp_path / "c.txt") == [["road"], ["car", "automobile"]]
    (tmp_path / "c.json").write_bytes('\ufeff{"classes": ["road", "car"]}'.encode("utf-8"))
    assert read_classes_json(tmp_path / "c.json")["classes"] == ["road", "car"]
    (tmp_path / "l.json").write_bytes('\ufeff["road"]'.encode("utf-8"))
    assert read_classes_file(tmp_path / "l.json") == ["road"]


def test_segment_reads_a_json_classes_file(photos, tmp_path):
    for i, data in enumerate((["road", ["car", "automobile"]], {"classes": ["road", "car"]})):
        path = tmp_path / f"classes{i}.json"
        path.write_text(json.dumps(data))
        out = tmp_path / f"out{i}"
        assert _segment([photos / "a.png"], path, out, "--background") == 0
        assert json.loads((out / "classes.json").read_text())["classes"] == ["road", "car"]


@pytest.mark.parametrize("data, message", [
    ({"x": 1}, "classes"), ([1, 2], "JSON list must hold"), (["road", "a\nb"], "control character"),
    ({"classes": ["road", "tab\there"]}, "control character"),
])
def test_bad_json_classes_files_are_refused(tmp_path, capsys, data, message):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    assert main(["segment", str(tmp_path), "--classes-file", str(path), "--out", str(tmp_path / "o"), *TINY]) == 2
    assert message in capsys.readouterr().err
    assert main(["project", "init", str(tmp_path / "p"), "--images", str(tmp_path), "--classes-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


class _Payload:
    def __reduce__(self):
        return (print, ("this ran",))


def test_a_refused_pickle_checkpoint_is_a_short_message(photos, classes_file, tmp_path, capsys):
    import torch

    weights = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "x": _Payload()}, weights)
    argv = ["segment", str(photos / "a.png"), "--classes-file", str(classes_file), "--out", str(tmp_path / "o"),
            "--model", "maskclip-tiny-vit", "--pretrained", str(weights), "--device", "cpu"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and len(err[0]) < 400, err
    assert "objects other than weights" in err[0] and "this ran" not in captured.out
