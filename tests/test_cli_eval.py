"""`maskclip eval`: JSON on stdout, table on stderr, one-line errors with exit code 2."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maskclip.cli import main
from maskclip.labels_io import read_label_image, write_classes_json, write_index_png

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _eval(capsys, *argv):
    code = main(["eval", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_gt_vs_gt_on_camvid_val(capsys):
    camvid = DATA / "camvid"
    if not (camvid / "val" / "labels").is_dir():
        pytest.skip("shared CamVid data not present")
    labels = camvid / "val" / "labels"
    code, out, err = _eval(capsys, "--pred", labels, "--gt", labels, "--classes-json", camvid / "classes.json")
    assert code == 0
    result = json.loads(out)
    assert result["mIoU"] == 1.0
    assert result["pixel_accuracy"] == 1.0
    assert result["images"] == len(list(labels.glob("*.png"))) == 101
    assert result["missing"] == 0
    assert set(result["per_class_iou"]) == {
        "sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car", "pedestrian",
        "bicyclist",
    }
    assert all(v == 1.0 for v in result["per_class_iou"].values())
    assert "mIoU" in err and "100.00" in err and "sign symbol" in err


def test_camvid_with_missing_and_wrong_predictions(capsys, tmp_path):
    camvid = DATA / "camvid"
    if not (camvid / "val" / "labels").is_dir():
        pytest.skip("shared CamVid data not present")
    gt_files = sorted((camvid / "val" / "labels").glob("*.png"))[:3]
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    for f in gt_files:
        shutil.copy(f, gt_dir / f.name)
    shutil.copy(gt_files[0], pred_dir / gt_files[0].name)  # perfect
    second = read_label_image(gt_files[1])
    write_index_png(pred_dir / gt_files[1].name, np.zeros_like(second))  # everything "sky"
    # gt_files[2] has no prediction
    code, out, err = _eval(capsys, "--pred", pred_dir, "--gt", gt_dir, "--classes-json", camvid / "classes.json")
    assert code == 0
    r = json.loads(out)
    assert r["images"] == 3 and r["missing"] == 1 and r["missing_files"] == [gt_files[2].name]
    # expected pixel accuracy from the files themselves
    g = [read_label_image(f) for f in gt_files]
    counted = [(x != 255).sum() for x in g]
    correct = counted[0] + ((g[1] == 0)).sum()
    assert r["pixel_accuracy"] == pytest.approx(correct / sum(counted))
    assert 0 < r["mIoU"] < 1
    assert "missing" in err


def test_missing_prediction_small_case(capsys, tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    write_index_png(gt_dir / "a.png", np.array([[0, 1], [1, 255]]))
    write_index_png(gt_dir / "b.png", np.array([[0, 0], [1, 1]]))
    write_index_png(pred_dir / "a.png", np.array([[0, 1], [0, 0]]))
    write_classes_json(tmp_path / "classes.json", ["bg", "fg"])
    code, out, err = _eval(capsys, "--pred", pred_dir, "--gt", gt_dir, "--classes-json", tmp_path / "classes.json")
    assert code == 0
    r = json.loads(out)
    # a: (0,0) (1,1) (1,0) counted, (255) ignored; b missing: 4 misses (two bg, two fg)
    # bg: TP 1, gt 3, pred 2 -> 1/4; fg: TP 1, gt 4, pred 1 -> 1/4; accuracy 2/7
    assert r["per_class_iou"] == pytest.approx({"bg": 0.25, "fg": 0.25})
    assert r["mIoU"] == pytest.approx(0.25)
    assert r["pixel_accuracy"] == pytest.approx(2 / 7)
    assert r["missing"] == 1 and r["images"] == 2
    assert "1 prediction(s) missing" in err and "b.png" in err


def test_ignore_index_option(capsys, tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    write_index_png(tmp_path / "gt" / "a.png", np.array([[0, 1, 2]]))
    write_index_png(tmp_path / "pred" / "a.png", np.array([[0, 1, 0]]))
    write_classes_json(tmp_path / "c.json", ["a", "b"], ignore_index=2)
    # the classes file's ignore_index (2) is used by default: both counted pixels are right
    code, out, _ = _eval(capsys, "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--classes-json",
                         tmp_path / "c.json")
    assert code == 0 and json.loads(out)["mIoU"] == 1.0
    # with --ignore-index 255, the value 2 is not a class of a 2-class list: a clear error
    code, out, err = _eval(capsys, "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--classes-json",
                           tmp_path / "c.json", "--ignore-index", "255")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "a.png" in err and "value 2" in err


def test_errors_are_one_line_with_exit_code_2(capsys, tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    write_index_png(tmp_path / "gt" / "s.png", np.zeros((3, 4), np.uint8))
    write_index_png(tmp_path / "pred" / "s.png", np.zeros((4, 3), np.uint8))
    write_classes_json(tmp_path / "c.json", ["a"])
    code, out, err = _eval(capsys, "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--classes-json",
                           tmp_path / "c.json")
    assert code == 2 and out == "" and err.startswith("maskclip eval: error:") and "s.png" in err
    assert err.count("\n") == 1

    code, out, err = _eval(capsys, "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--classes-json",
                           tmp_path / "absent.json")
    assert code == 2 and "absent.json" in err and "not found" in err

    write_index_png(tmp_path / "pred" / "s.png", np.zeros((3, 4), np.uint8))
    (tmp_path / "gt" / "t.png").write_text("not a png")
    code, out, err = _eval(capsys, "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--classes-json",
                           tmp_path / "c.json")
    assert code == 2 and "t.png" in err


def test_python_dash_m_entry_point(tmp_path):
    (tmp_path / "gt").mkdir()
    write_index_png(tmp_path / "gt" / "a.png", np.array([[0, 1]]))
    write_classes_json(tmp_path / "c.json", ["a", "b"])
    proc = subprocess.run(
        [sys.executable, "-m", "maskclip", "eval", "--pred", str(tmp_path / "gt"), "--gt", str(tmp_path / "gt"),
         "--classes-json", str(tmp_path / "c.json")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mIoU"] == 1.0
