"""Training targets of MaskCLIP+: verified pixels, MaskCLIP pseudo labels, then self-training.

- Guided phase: a pixel a person verified keeps its annotation (ground truth); every other pixel gets
  the teacher's pseudo label, the arg-max of MaskCLIP's refined (PD + KS) probabilities. With a
  confidence threshold, pixels whose teacher probability is lower become 255 (ignored by the loss).
- Self-training phase (after `guided_fraction` of the schedule, 1/10 by default as in the paper): the
  student's own arg-max replaces the teacher for non-verified pixels; verified pixels stay ground truth.
  As in the official code, the arg-max comes from the same (detached) forward pass. That presumes a
  student that is already good when the phase starts (ImageNet backbone): a randomly initialised one
  collapses onto the dominant classes (bench/bench_student_vs_teacher.py), so without ImageNet weights
  the automatic switch turns self-training off (TrainConfig.resolve_self_training).

Teacher labels are computed once per image and cached in the run folder (`TeacherCache`), keyed by the
image and its content fingerprint, under a signature of everything that changes them (CLIP model and
weights, classes, background prompts, PD/KS settings, scales). A different signature empties the cache.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..atomic import atomic_write
from ..defaults import MAX_CLASSES, UNLABELLED
from ..errors import MaskCLIPError

IGNORE = UNLABELLED  # ignored by the loss: the unlabelled value


def guided_target(pseudo: np.ndarray, confidence: np.ndarray | None, labels: np.ndarray,
                  verified: np.ndarray, threshold: float | np.ndarray | None = None) -> np.ndarray:
    """uint8 HxW: annotation on verified pixels, the teacher elsewhere (255 where unsure or unlabelled).

    threshold: one probability for every class, or one per class (indexed by the pseudo label; see
    `class_balanced_thresholds`)."""
    target = np.asarray(pseudo, dtype=np.uint8).copy()
    if threshold is not None and confidence is not None:
        if np.ndim(threshold):  # per class: a pixel's bar is that of the class the teacher gave it
            bars = np.append(np.asarray(threshold, np.float32), np.inf)  # an unlabelled pixel stays ignored
            threshold = bars[np.minimum(target, len(bars) - 1)]
        target[np.asarray(confidence) < threshold] = IGNORE
    verified = np.asarray(verified, dtype=bool)
    target[verified] = np.asarray(labels, dtype=np.uint8)[verified]
    return target


CONFIDENCE_BINS = 1000  # resolution of the per-class confidence histograms (class_balanced_thresholds)


def class_balanced_thresholds(cache: "TeacherCache", items: Sequence, num_classes: int, keep: float) -> np.ndarray:
    """Per-class confidence bars that keep the teacher's most confident `keep` share of each class's pixels.

    One global threshold keeps the classes the teacher is sure of (background) and drops the ones it is
    unsure of, which is how a student forgets classes; a per-class quantile keeps the same share of every
    class. Computed from histograms of the cached confidences (one pass, memory independent of the data).
    A class the teacher never predicts gets the bar 0. Returns float32 [num_classes]."""
    if not 0.0 < keep <= 1.0:
        raise MaskCLIPError(f"the share of confident pixels to keep must lie in (0, 1], got {keep}")
    hist = np.zeros((num_classes, CONFIDENCE_BINS), np.int64)
    for item in items:
        labels, conf = cache.get(item.key, item.fingerprint)
        if conf is None:
            raise MaskCLIPError(f"the teacher cache holds no confidences for {item.key}: class-balanced "
                                "thresholds need them (delete the run's teacher/ folder to compute them again)")
        ok = labels < num_classes
        bins = np.clip((conf[ok] * CONFIDENCE_BINS).astype(np.int64), 0, CONFIDENCE_BINS - 1)
        hist += np.bincount(labels[ok].astype(np.int64) * CONFIDENCE_BINS + bins,
                            minlength=num_classes * CONFIDENCE_BINS).reshape(num_classes, CONFIDENCE_BINS)
    bars = np.zeros(num_classes, np.float32)
    for c in range(num_classes):
        total = hist[c].sum()
        if not total:
            continue
        above = np.cumsum(hist[c][::-1])[::-1]  # pixels at or above each bin's lower edge
        first = int(np.nonzero(above >= keep * total)[0].max())  # highest bin that still keeps the share
        bars[c] = first / CONFIDENCE_BINS
    return bars


def self_training_target(logits: torch.Tensor, target: torch.Tensor, verified: torch.Tensor,
                         threshold: float | None = None) -> torch.Tensor:
    """Student arg-max on non-verified pixels, `target` (ground truth) on verified ones.

    logits [B,K,H,W] (detached here), target int64 [B,H,W], verified bool [B,H,W]. With a threshold,
    non-verified pixels whose softmax maximum is lower are ignored.
    """
    with torch.no_grad():
        probs = logits.detach().float().softmax(dim=1)
        conf, pred = probs.max(dim=1)
        if threshold is not None:
            pred = pred.masked_fill(conf < threshold, IGNORE)
        return torch.where(verified, target, pred)


def class_balanced_self_training_target(logits: torch.Tensor, target: torch.Tensor, fixed: torch.Tensor,
                                        keep: float) -> torch.Tensor:
    """Class-balanced self-training (CBST, Zou et al., ECCV 2018) on one batch.

    Each class's probability is divided by its bar lambda_c, the (1 - keep) quantile of the confidences of
    the batch's pixels predicted as c; a pixel takes the class with the largest ratio, or is ignored when
    no ratio reaches 1. A class the network is habitually unsure of (one the teacher confused with
    background) then wins the pixels where it is relatively strong, instead of losing all of them to the
    dominant class as a plain arg-max does. `fixed` pixels (verified, padding) keep `target`."""
    with torch.no_grad():
        probs = logits.detach().float().softmax(dim=1)
        conf, pred = probs.max(dim=1)
        bars = torch.ones(probs.shape[1], device=probs.device)
        for c in pred.unique().tolist():
            bars[c] = torch.quantile(conf[pred == c], 1.0 - keep).clamp_min(1e-6)
        ratio, balanced = (probs / bars[None, :, None, None]).max(dim=1)
        balanced = balanced.masked_fill(ratio < 1.0, IGNORE)
        return torch.where(fixed, target, balanced)


def _safe_name(key: str) -> str:
    """File name for an item key: readable, collision-free (hash suffix), no path separators."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:80]
    return f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


class TeacherCacheError(MaskCLIPError):
    """A cached pseudo-label file is damaged or does not fit its image (the message names it)."""


class TeacherCache:
    """Pseudo labels (uint8 HxW) and teacher confidences (float16 HxW, optional) per item, on disk."""

    def __init__(self, folder: str | Path, signature: dict):
        self.folder = Path(folder)
        self.signature = json.loads(json.dumps(signature, sort_keys=True, default=str))

    def open(self) -> "TeacherCache":
        """Create the folder, discarding entries made under another signature (call on one rank only)."""
        sig_file = self.folder / "signature.json"
        try:
            old = json.loads(sig_file.read_text(encoding="utf-8")) if sig_file.is_file() else None
        except (OSError, UnicodeDecodeError, ValueError):
            old = "damaged"  # an unreadable signature: nothing cached can be trusted, so it is computed again
        if old is not None and old != self.signature and self.folder.is_dir() and not self.folder.is_symlink():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if old != self.signature:
            with atomic_write(sig_file, "w") as f:
                json.dump(self.signature, f, indent=1, sort_keys=True)
        return self

    def path(self, key: str) -> Path:
        return self.folder / f"{_safe_name(key)}.npz"

    def _problem(self, data, fingerprint: str, shape, n_classes) -> str | None:
        """Why a cached file cannot be used for an item (None: it can)."""
        if str(data["fingerprint"]) != fingerprint:
            return "belongs to other image content"
        labels = data["labels"]
        if labels.dtype != np.uint8 or labels.ndim != 2 or (shape is not None and labels.shape != tuple(shape)):
            return f"holds labels of shape {labels.shape} ({labels.dtype}), the image is {tuple(shape or ())}"
        if n_classes is not None and labels.size and ((labels >= n_classes) & (labels != IGNORE)).any():
            return f"holds label values above the {n_classes} classes"
        if "confidence" in data and data["confidence"].shape != labels.shape:
            return "holds confidences of another shape than its labels"
        return None

    def has(self, key: str, fingerprint: str = "", shape: tuple[int, int] | None = None,
            n_classes: int | None = None) -> bool:
        """A usable cached file: its fingerprint, and with `shape` / `n_classes` its labels' shape and values."""
        path = self.path(key)
        if not path.is_file():
            return False
        try:
            with np.load(path) as data:
                if shape is None and n_classes is None:
                    return str(data["fingerprint"]) == fingerprint
                return self._problem(data, fingerprint, shape, n_classes) is None
        except (OSError, ValueError, KeyError, EOFError):  # truncated / foreign file: recompute it
            return False

    def put(self, key: str, labels: np.ndarray, confidence: np.ndarray | None = None,
            fingerprint: str = "") -> None:
        arrays = {"labels": np.asarray(labels, dtype=np.uint8), "fingerprint": np.array(fingerprint)}
        if confidence is not None:
            arrays["confidence"] = np.asarray(confidence, dtype=np.float16)
        with atomic_write(self.path(key), "wb") as f:
            np.savez_compressed(f, **arrays)

    def get(self, key: str, fingerprint: str = "", shape: tuple[int, int] | None = None,
            n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        path = self.path(key)
        try:
            with np.load(path) as data:
                if str(data["fingerprint"]) != fingerprint:
                    raise KeyError(f"cached pseudo labels of {key} belong to other image content")
                problem = self._problem(data, fingerprint, shape, n_classes)
                if problem:
                    raise TeacherCacheError(f"{path}: the cached pseudo labels of {key} cannot be used (it {problem}); "
                                            "delete the file and train with --resume to compute them again")
                conf = data["confidence"].astype(np.float32) if "confidence" in data else None
                return data["labels"], conf
        except (OSError, ValueError, EOFError) as exc:
            raise TeacherCacheError(f"{path}: the cached pseudo labels of {key} are unreadable ({exc}); delete "
                                    "the file and train with --resume to compute them again") from None


def maskclip_pseudo_labels(model, image: np.ndarray, classes: Sequence, segment_kwargs: dict,
                           ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(labels uint8, confidence float32, output class names) from MaskCLIP's refined scores."""
    seg = model.segment(image, classes, **segment_kwargs)
    if len(seg.class_names) > IGNORE:
        raise ValueError(f"at most {MAX_CLASSES} output classes fit a uint8 label map")
    return seg.labels.astype(np.uint8), seg.probs.max(axis=0), list(seg.class_names)


def fill_teacher_cache(cache: TeacherCache, items: Sequence, model, classes: Sequence, segment_kwargs: dict,
                       expected_names: Sequence[str], rank: int = 0, world_size: int = 1,
                       progress=None, should_stop=None) -> int:
    """Compute missing pseudo labels of this rank's share of `items` (i % world_size == rank).

    Each rank writes only the files of its own images (disjoint names), so shards never collide; the
    run-wide files stay rank 0's. `should_stop()` true ends early (what is done stays cached).
    Returns how many images were computed.
    """
    done = 0
    for i, item in enumerate(items):
        if should_stop is not None and should_stop():
            break
        if i % world_size != rank or cache.has(item.key, item.fingerprint):
            continue
        # the image as stored: its digest is the key of MaskCLIP's feature cache (shared with the annotator)
        labels, conf, names = maskclip_pseudo_labels(model, item.load_image(), classes, segment_kwargs)
        if list(names) != list(expected_names):
            raise RuntimeError(f"MaskCLIP returned classes {names}, expected {list(expected_names)}")
        cache.put(item.key, labels, conf, item.fingerprint)
        done += 1
        if progress is not None:
            progress(done)
    return done
