"""Segmentation scores: one confusion matrix accumulated over a dataset, then IoU and pixel accuracy.

Conventions (the usual ones of VOC / mmseg evaluation, made explicit for the corner cases):
- Ground-truth pixels equal to `ignore_index` are not counted at all. Any other ground-truth value must
  be a class index 0..K-1 (anything else is an error: the class list and the labels disagree).
- A prediction outside 0..K-1 (e.g. 255 "unlabelled", or a missing prediction file) on a counted pixel is
  a miss for the ground-truth class and a false positive for no class. The confusion matrix therefore
  has K+1 columns: rows = ground truth, columns = predicted class, column K = "no valid prediction".
- IoU_c = TP / (TP + FP + FN). A class that occurs neither in the ground truth nor in the predictions has
  IoU None and is left out of the mIoU (the mean over classes with a non-empty union).
- Pixel accuracy = correctly labelled counted pixels / counted pixels.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .defaults import UNLABELLED
from .errors import MaskCLIPError
from .images import list_images
from .labels_io import read_label_image


class EvaluationError(MaskCLIPError):
    """Predictions and ground truth cannot be compared (shapes, class indices, folders)."""


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = UNLABELLED) -> np.ndarray:
    """int64 matrix [K, K+1]: entry (g, p) counts pixels of ground-truth class g predicted as p.

    Column K counts predictions outside 0..K-1. Pixels whose ground truth is `ignore_index` are skipped.
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise EvaluationError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    for name, arr in (("ground truth", gt), ("prediction", pred)):
        if arr.dtype.kind not in "iu":
            raise EvaluationError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    k = int(num_classes)
    if k < 1:
        raise EvaluationError(f"num_classes must be at least 1, got {num_classes}")
    valid = gt != ignore_index
    g = gt[valid].astype(np.int64)
    if g.size:
        bad = g[(g < 0) | (g >= k)]
        if bad.size:
            raise EvaluationError(
                f"ground truth contains value {int(bad[0])}, which is neither a class index 0..{k - 1} nor the "
                f"ignore index {ignore_index}; check the class list"
            )
    p = pred[valid].astype(np.int64)
    p[(p < 0) | (p >= k)] = k
    return np.bincount(g * (k + 1) + p, minlength=k * (k + 1)).reshape(k, k + 1)


def scores_from_confusion(cm: np.ndarray, class_names: Sequence[str]) -> dict:
    """mIoU, per-class IoU / accuracy (None where undefined) and pixel accuracy from a [K, K] or [K, K+1] matrix."""
    cm = np.asarray(cm, dtype=np.int64)
    names = list(class_names)
    k = len(names)
    if cm.ndim != 2 or cm.shape[0] != k or cm.shape[1] not in (k, k + 1):
        raise EvaluationError(f"confusion matrix of shape {cm.shape} does not fit {k} class names")
    if len(set(names)) != k:
        raise EvaluationError("class names must be unique")
    tp = np.diag(cm[:, :k])
    gt_total = cm.sum(axis=1)
    pred_total = cm[:, :k].sum(axis=0)
    union = gt_total + pred_total - tp
    per_class_iou = {n: (float(tp[i] / union[i]) if union[i] else None) for i, n in enumerate(names)}
    per_class_acc = {n: (float(tp[i] / gt_total[i]) if gt_total[i] else None) for i, n in enumerate(names)}
    ious = [v for v in per_class_iou.values() if v is not None]
    accs = [v for v in per_class_acc.values() if v is not None]
    total = int(gt_total.sum())
    return {
        "mIoU": float(np.mean(ious)) if ious else None,
        "per_class_iou": per_class_iou,
        "pixel_accuracy": float(tp.sum() / total) if total else None,
        "mean_accuracy": float(np.mean(accs)) if accs else None,
        "per_class_accuracy": per_class_acc,
        "counted_pixels": total,
        "unlabelled_predictions": int(cm[:, k].sum()) if cm.shape[1] == k + 1 else 0,
    }


def _by_stem(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise EvaluationError(f"{what} folder {folder} does not exist")
    files: dict[str, Path] = {}
    for f in list_images(folder):
        if f.stem in files:
            raise EvaluationError(f"{what} folder has two files for {f.stem!r}: {files[f.stem].name} and {f.name}")
        files[f.stem] = f
    return files


def evaluate_folders(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    class_names: Sequence[str],
    ignore_index: int = UNLABELLED,
) -> dict:
    """Score the label images of `pred_dir` against those of `gt_dir`, files matched by stem.

    A ground-truth file without a prediction counts all its counted pixels as misses; the number (and
    names) of such files are in the result. Predictions without ground truth are only counted.
    """
    gt_files = _by_stem(Path(gt_dir), "ground-truth")
    pred_files = _by_stem(Path(pred_dir), "prediction")
    if not gt_files:
        raise EvaluationError(f"no label images found in the ground-truth folder {gt_dir}")
    k = len(class_names)
    cm = np.zeros((k, k + 1), np.int64)
    missing = []
    for stem, gt_path in sorted(gt_files.items()):
        gt = read_label_image(gt_path)
        pred_path = pred_files.get(stem)
        if pred_path is None:
            missing.append(gt_path.name)
            pred = np.full(gt.shape, -1, np.int64)  # no valid prediction anywhere
        else:
            pred = read_label_image(pred_path)
            if pred.shape != gt.shape:
                raise EvaluationError(
                    f"{pred_path.name}: prediction is {pred.shape[1]}x{pred.shape[0]} (WxH) but the ground "
                    f"truth {gt_path.name} is {gt.shape[1]}x{gt.shape[0]}"
                )
        try:
            cm += confusion_matrix(gt, pred, k, ignore_index)
        except EvaluationError as exc:
            raise EvaluationError(f"{gt_path.name}: {exc}") from None
    result = scores_from_confusion(cm, class_names)
    result.update(
        images=len(gt_files),
        missing=len(missing),
        missing_files=missing,
        extra_predictions=len(set(pred_files) - set(gt_files)),
        ignore_index=ignore_index,
    )
    return result


def format_table(result: dict) -> str:
    """Readable per-class table (percentages) plus the summary lines of a score dictionary."""

    def pct(v):
        return "-" if v is None else f"{100 * v:6.2f}"

    names = list(result["per_class_iou"])
    width = max([len("pixel accuracy")] + [len(n) for n in names])
    lines = [f"{'class':<{width}}  {'IoU %':>7}  {'acc %':>7}", "-" * (width + 18)]
    accs = result.get("per_class_accuracy", {})
    for n in names:
        lines.append(f"{n:<{width}}  {pct(result['per_class_iou'][n]):>7}  {pct(accs.get(n)):>7}")
    lines.append("-" * (width + 18))
    lines.append(f"{'mIoU':<{width}}  {pct(result['mIoU']):>7}")
    lines.append(f"{'pixel accuracy':<{width}}  {pct(result['pixel_accuracy']):>7}")
    if "images" in result:
        lines.append(f"images: {result['images']}, missing predictions: {result['missing']}")
    return "\n".join(lines)
