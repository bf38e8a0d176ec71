"""Confusion matrix, IoU and folder evaluation against hand-computed cases."""
import numpy as np
import pytest

from maskclip.errors import MaskCLIPError
from maskclip.labels_io import write_index_png
from maskclip.metrics import confusion_matrix, evaluate_folders, format_table, scores_from_confusion


def test_confusion_matrix_three_classes_by_hand():
    gt = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    # counted pixels (gt, pred): (0,0) (0,1) (1,1) (1,1) (2,0); the 255 pixel is ignored.
    # rows = gt, columns = pred 0, 1, 2, invalid
    expected = np.array([
        [1, 1, 0, 0],
        [0, 2, 0, 0],
        [1, 0, 0, 0],
    ])
    cm = confusion_matrix(gt, pred, 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)

    s = scores_from_confusion(cm, ["a", "b", "c"])
    # IoU a = TP 1 / (gt 2 + pred 2 - 1) = 1/3; b = 2 / (2 + 3 - 2) = 2/3; c = 0 / (1 + 0 - 0) = 0
    assert s["per_class_iou"] == pytest.approx({"a": 1 / 3, "b": 2 / 3, "c": 0.0})
    assert s["mIoU"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert s["pixel_accuracy"] == pytest.approx(3 / 5)
    # per-class accuracy (recall): a 1/2, b 2/2, c 0/1
    assert s["per_class_accuracy"] == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.0})
    assert s["mean_accuracy"] == pytest.approx(0.5)
    assert s["counted_pixels"] == 5


def test_invalid_predictions_are_misses_but_no_false_positive():
    gt = np.array([0, 0, 1, 1, 255, 1], np.uint8)
    pred = np.array([0, 255, 1, 7, 0, -1], np.int32)
    # gt 0: pred 0 (hit), 255 (invalid); gt 1: 1 (hit), 7 (invalid), -1 (invalid); ignored pixel dropped
    cm = confusion_matrix(gt, pred, 2)
    np.testing.assert_array_equal(cm, [[1, 0, 1], [0, 1, 2]])
    s = scores_from_confusion(cm, ["x", "y"])
    # IoU x = 1 / (2 + 1 - 1) = 1/2; IoU y = 1 / (3 + 1 - 1) = 1/3: invalid predictions add to no class
    assert s["per_class_iou"] == pytest.approx({"x": 0.5, "y": 1 / 3})
    assert s["pixel_accuracy"] == pytest.approx(2 / 5)
    assert s["unlabelled_predictions"] == 3


def test_absent_class_is_none_and_left_out_of_miou():
    gt = np.array([[0, 1], [1, 1]])
    pred = np.array([[0, 1], [0, 1]])
    s = scores_from_confusion(confusion_matrix(gt, pred, 4), ["a", "b", "c", "d"])
    # a: 1 / (1 + 2 - 1) = 1/2; b: 2 / (3 + 2 - 2) = 2/3; c, d never occur -> None
    assert s["per_class_iou"]["c"] is None and s["per_class_iou"]["d"] is None
    assert s["mIoU"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert s["per_class_accuracy"]["c"] is None


def test_class_only_predicted_counts_as_zero():
    gt = np.array([0, 0, 0, 0])
    pred = np.array([0, 0, 0, 1])
    s = scores_from_confusion(confusion_matrix(gt, pred, 2), ["a", "b"])
    # a: 3 / (4 + 3 - 3) = 3/4; b: 0 / (0 + 1 - 0) = 0 (a false positive only)
    assert s["per_class_iou"] == pytest.approx({"a": 0.75, "b": 0.0})
    assert s["mIoU"] == pytest.approx(0.375)


def test_scores_accept_square_matrix_and_all_ignored():
    s = scores_from_confusion(np.array([[3, 1], [0, 4]]), ["a", "b"])
    # a: 3 / (4 + 3 - 3) = 3/4; b: 4 / (4 + 5 - 4) = 4/5
    assert s["mIoU"] == pytest.approx((0.75 + 0.8) / 2)
    empty = scores_from_confusion(confusion_matrix(np.full((2, 2), 255), np.zeros((2, 2), int), 2), ["a", "b"])
    assert empty["mIoU"] is None and empty["pixel_accuracy"] is None


def test_confusion_matrix_errors():
    with pytest.raises(MaskCLIPError, match=r"\(2, 3\).*\(2, 2\)"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)
    with pytest.raises(MaskCLIPError, match="value 5.*0..2"):
        confusion_matrix(np.array([0, 5]), np.array([0, 0]), 3)
    with pytest.raises(MaskCLIPError, match="float"):
        confusion_matrix(np.zeros(3, int), np.zeros(3), 2)
    with pytest.raises(MaskCLIPError, match="does not fit 3 class names"):
        scores_from_confusion(np.zeros((2, 3)), ["a", "b", "c"])


def test_custom_ignore_index():
    gt = np.array([0, 1, 2])
    pred = np.array([0, 0, 0])
    # ignore 2: counted (0,0) and (1,0) -> a: 1 / (1 + 2 - 1) = 1/2, b: 0 / (1 + 0) = 0
    s = scores_from_confusion(confusion_matrix(gt, pred, 2, ignore_index=2), ["a", "b"])
    assert s["per_class_iou"] == pytest.approx({"a": 0.5, "b": 0.0})


# ---------------------------------------------------------------- folders


def _write(folder, name, arr):
    folder.mkdir(parents=True, exist_ok=True)
    write_index_png(folder / name, np.asarray(arr, np.uint8))


def test_evaluate_folders_accumulates_one_matrix(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    # image a: 6 counted pixels of class 1, all right; image b: 2 pixels of class 1, both wrong.
    _write(gt_dir, "a.png", [[1, 1, 1], [1, 1, 1], [0, 0, 255]])
    _write(pred_dir, "a.png", [[1, 1, 1], [1, 1, 1], [0, 0, 1]])
    _write(gt_dir, "b.png", [[1, 1], [0, 0]])
    _write(pred_dir, "b.png", [[0, 0], [0, 0]])
    r = evaluate_folders(pred_dir, gt_dir, ["bg", "fg"])
    # summed matrix: gt0 -> [4, 0], gt1 -> [2, 6]
    # IoU bg = 4 / (4 + 6 - 4) = 2/3; IoU fg = 6 / (8 + 6 - 6) = 3/4 (per-image means would give 0.5)
    assert r["per_class_iou"] == pytest.approx({"bg": 2 / 3, "fg": 3 / 4})
    assert r["mIoU"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert r["pixel_accuracy"] == pytest.approx(10 / 12)
    assert r["images"] == 2 and r["missing"] == 0 and r["extra_predictions"] == 0


def test_missing_prediction_counts_as_misses(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    _write(gt_dir, "a.png", [[0, 1], [1, 255]])
    _write(pred_dir, "a.png", [[0, 1], [1, 0]])
    _write(gt_dir, "b.png", [[1, 1], [0, 255]])  # no prediction for b
    _write(pred_dir, "zzz.png", [[0]])  # prediction without ground truth: only counted
    r = evaluate_folders(pred_dir, gt_dir, ["bg", "fg"])
    # a: all 3 counted pixels right; b: its 3 counted pixels (fg, fg, bg) are misses
    # bg: TP 1, gt 2, pred 1 -> 1/2; fg: TP 2, gt 4, pred 2 -> 2/4
    assert r["per_class_iou"] == pytest.approx({"bg": 0.5, "fg": 0.5})
    assert r["pixel_accuracy"] == pytest.approx(3 / 6)
    assert r["missing"] == 1 and r["missing_files"] == ["b.png"]
    assert r["extra_predictions"] == 1
    assert r["images"] == 2


def test_shape_mismatch_names_the_file(tmp_path):
    _write(tmp_path / "gt", "street_01.png", np.zeros((4, 5)))
    _write(tmp_path / "pred", "street_01.png", np.zeros((5, 4)))
    with pytest.raises(MaskCLIPError, match="street_01.png.*4x5.*5x4"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt", ["a"])


def test_gt_value_outside_class_list_names_the_file(tmp_path):
    _write(tmp_path / "gt", "f.png", [[0, 9]])
    _write(tmp_path / "pred", "f.png", [[0, 0]])
    with pytest.raises(MaskCLIPError, match="f.png.*value 9"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt", ["a", "b"])


def test_folder_errors(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    with pytest.raises(MaskCLIPError, match="no label images"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt", ["a"])
    with pytest.raises(MaskCLIPError, match="prediction folder .*missing.* does not exist"):
        evaluate_folders(tmp_path / "missing", tmp_path / "gt", ["a"])
    _write(tmp_path / "gt", "x.png", [[0]])
    _write(tmp_path / "gt", "x.tif", [[0]])
    with pytest.raises(MaskCLIPError, match="two files for 'x'"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt", ["a"])


def test_format_table():
    scores = scores_from_confusion(np.array([[3, 1], [0, 0]]), ["road", "sign symbol"])
    table = format_table(scores)
    lines = table.splitlines()
    assert lines[0].split() == ["class", "IoU", "%", "acc", "%"]
    assert lines[2].split() == ["road", "75.00", "75.00"]
    assert lines[3].split() == ["sign", "symbol", "0.00", "-"]
    assert "mIoU" in table and "37.50" in table
    assert "pixel accuracy" in table
