"""`maskclip segment` end to end with a tiny random-weights model."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from maskclip.cli import main

from conftest import shared_data


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / "rgb.jpg")
    Image.fromarray(rng.integers(0, 255, (30, 30), dtype=np.uint8)).save(folder / "grey.png")
    tifffile.imwrite(folder / "deep.tif", rng.integers(0, 65535, (33, 47), dtype=np.uint16))
    return folder


@pytest.fixture
def classes_file(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("road\ncar, automobile\nperson\n")
    return path


def _segment(inputs, classes_file, out, *extra):
    return main(["segment", *map(str, inputs), "--classes-file", str(classes_file), "--out", str(out),
                 "--model", "maskclip-tiny-vit", "--pretrained", "none", "--device", "cpu", *extra])


def test_writes_indexed_pngs_and_classes_json(images, classes_file, tmp_path):
    out = tmp_path / "out"
    assert _segment([images], classes_file, out, "--scales", "224", "336", "--no-key-smoothing") == 0
    names = json.loads((out / "classes.json").read_text())["classes"]
    assert names == ["road", "car", "person", "background"]
    for stem, shape in [("rgb", (40, 60)), ("grey", (30, 30)), ("deep", (33, 47))]:
        png = Image.open(out / f"{stem}.png")
        assert png.mode == "P" and png.getpalette() is not None
        labels = np.array(png)
        assert labels.shape == shape and labels.max() < len(names)


def test_background_flag_alone_means_no_background(images, classes_file, tmp_path):
    out = tmp_path / "out"
    assert _segment([images / "rgb.jpg"], classes_file, out, "--background") == 0
    assert json.loads((out / "classes.json").read_text())["classes"] == ["road", "car", "person"]


def test_corrupt_file_is_skipped_and_reported(images, classes_file, tmp_path, capsys):
    (images / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    assert _segment([images], classes_file, out) == 1
    assert sorted(p.name for p in out.glob("*.png")) == ["deep.png", "grey.png", "rgb.png"]
    assert "broken.png" in capsys.readouterr().err


@pytest.mark.parametrize("setup,match", [
    (lambda d, c: c.write_text("\n"), "no classes"),
    (lambda d, c: c.unlink(), "cannot read classes file"),
    (lambda d, c: [p.unlink() for p in d.iterdir()], "no images"),
])
def test_bad_inputs_are_one_line_errors(images, classes_file, tmp_path, capsys, setup, match):
    setup(images, classes_file)
    assert _segment([images], classes_file, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_duplicate_stems_are_refused_before_any_work(images, classes_file, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "rgb.png").write_bytes((images / "grey.png").read_bytes())
    assert _segment([images, other], classes_file, tmp_path / "out") == 2
    assert "separate --out" in capsys.readouterr().err


def test_missing_weights_message_without_traceback(images, classes_file, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "maskclip", "segment", str(images), "--classes-file", str(classes_file),
         "--out", str(tmp_path / "out"), "--model", "maskclip-tiny-vit", "--pretrained", str(tmp_path / "w.pt")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "checkpoint file not found" in result.stderr and "Traceback" not in result.stderr


def test_segment_then_eval_on_camvid(classes_file, tmp_path, capsys):
    camvid = shared_data("camvid")
    folder = tmp_path / "cv"
    folder.mkdir()
    for path in sorted((camvid / "val" / "images").glob("*.jpg"))[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    names = json.loads((camvid / "classes.json").read_text())["classes"]
    (tmp_path / "camvid.txt").write_text("\n".join(names) + "\n")
    out = tmp_path / "pred"
    assert _segment([folder], tmp_path / "camvid.txt", out, "--background") == 0
    gt = tmp_path / "gt"
    gt.mkdir()
    for path in folder.iterdir():
        (gt / f"{path.stem}.png").write_bytes((camvid / "val" / "labels" / f"{path.stem}.png").read_bytes())
    capsys.readouterr()
    assert main(["eval", "--pred", str(out), "--gt", str(gt), "--classes-json", str(camvid / "classes.json")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["mIoU"] <= 1.0 and set(result["per_class_iou"]) == set(names)
