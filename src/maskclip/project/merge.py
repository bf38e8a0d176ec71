"""The merge rules, as pure numpy functions (no I/O, no Project): what a save, a prediction and a read make
of the labels already committed.

Labels come in three representations: class uids (int32, -1 = unlabelled; what merges work in, so classes
another process added keep their pixels), a stored revision's indices into its own `class_uids` (uint8,
255 = unlabelled), and a reader's current class indices (uint8, 255 = unlabelled). The rules:

- confirmed background: a verified unlabelled pixel is a person saying none of the classes is there; it
  keeps its flag in every representation, and predictions leave it unlabelled (`keep_verified`, the one
  statement of that rule);
- a pixel whose class is dropped (removed, or unknown to the reader) reads as unlabelled and unverified;
- pixels of a class another process added (uid at or above the reader's next uid) are kept through merges;
- a prediction never changes a verified pixel (`merge_prediction`);
- an editor's save takes only the pixels it changed relative to the copy the caller holds; every other
  pixel keeps the latest committed revision (`merge_edit`, `merge_save`, `merge_verified`).
"""
from __future__ import annotations

from typing import Container, Mapping, Sequence

import numpy as np

from .schema import UNLABELLED


def keep_verified(verified: np.ndarray, has_class: np.ndarray, unlabelled: np.ndarray) -> np.ndarray:
    """The confirmed-background rule: a verified flag survives where the pixel still has a class, or where it
    is unlabelled (confirmed background); a pixel whose class was dropped (removed, unknown to the reader,
    beyond what a label file can index) loses it."""
    return verified & (has_class | unlabelled)


# --- representations ---------------------------------------------------------------------------
def uids_of(labels: np.ndarray, class_uids: Sequence[int]) -> np.ndarray:
    """Current class indices (255 = unlabelled) -> class uids (-1 = unlabelled)."""
    lut = np.full(256, -1, np.int32)
    lut[:len(class_uids)] = list(class_uids)
    return lut[labels]


def indices_of(uids: np.ndarray, uid_to_index: Mapping[int, int]) -> np.ndarray:
    """Class uids -> current class indices; unlabelled and classes unknown here -> 255."""
    top = max(int(uids.max(initial=-1)), max(uid_to_index, default=-1))
    lut = np.full(top + 2, UNLABELLED, np.uint8)
    for uid, i in uid_to_index.items():
        lut[uid + 1] = i
    return lut[uids + 1]


def view(uids: np.ndarray, verified: np.ndarray, uid_to_index: Mapping[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """What a reader sees of uid labels: current class indices, and verified pixels of classes it knows
    (pixels of classes it does not know read as unlabelled and unverified; verified unlabelled pixels stay
    verified: confirmed background)."""
    labels = indices_of(uids, uid_to_index)
    return labels, keep_verified(verified, labels != UNLABELLED, uids < 0)


def decode(raw: np.ndarray, stored_verified: np.ndarray | None, stored_uids: Sequence[int],
           known: Container[int], horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """A stored revision (indices into its `stored_uids`, its verified mask or None) -> (uids, verified).

    A uid is kept when this reader knows the class or another process added it (uid >= `horizon`, the
    reader's next uid); classes the reader knows were removed read as unlabelled and lose their flag."""
    lut = np.full(256, -1, np.int32)
    for i, uid in enumerate(stored_uids[:UNLABELLED]):
        if uid in known or uid >= horizon:
            lut[i] = uid
    labels = lut[raw]
    if stored_verified is None:
        return labels, np.zeros(raw.shape, bool)
    return labels, keep_verified(stored_verified, labels >= 0, raw == UNLABELLED)


def encode(labels: np.ndarray, verified: np.ndarray | None, ours: list[int]):
    """uid labels and verified mask -> what a revision stores: (uids as int32, indices uint8, verified,
    class_uids). class_uids are this instance's classes, then classes other processes added that occur."""
    labels = labels.astype(np.int32, copy=False)
    present = np.flatnonzero(np.bincount(labels.ravel() + 1)) - 1
    extra = sorted(set(present.tolist()) - set(ours) - {-1})  # classes added by another process
    class_uids = (ours + extra)[:UNLABELLED]
    lut = np.full(int(present.max(initial=-1)) + 2, UNLABELLED, np.uint8)
    for i, uid in enumerate(class_uids):
        if uid <= present.max(initial=-1):
            lut[uid + 1] = i
    raw = lut[labels + 1]
    verified = np.zeros(raw.shape, bool) if verified is None else verified
    return labels, raw, keep_verified(verified, raw != UNLABELLED, labels == -1), class_uids


# --- merges ------------------------------------------------------------------------------------
def merge_prediction(latest: np.ndarray, latest_v: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """A prediction (uids) merged into the latest revision: verified pixels keep their labels (a verified
    unlabelled pixel stays unlabelled: confirmed background), every other pixel takes the prediction."""
    return np.where(latest_v, latest, predicted)


def merge_edit(latest: np.ndarray, latest_v: np.ndarray, edit: np.ndarray, edit_v: np.ndarray,
               edited: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An editor's save: the pixels it edited (label or verified flag changed relative to the copy it held)
    take its labels and flags; every other pixel keeps the latest committed revision."""
    return np.where(edited, edit, latest), np.where(edited, edit_v, latest_v)


def merge_save(latest: np.ndarray, latest_v: np.ndarray, base: np.ndarray, base_v: np.ndarray, known: bool,
               labels: np.ndarray, mask: np.ndarray | None, mark_changed_verified: bool,
               class_uids: Sequence[int], uid_to_index: Mapping[int, int]):
    """set_labels: the caller's `labels` (current indices) and `mask` (None: keep the flags it holds), edited
    from its copy `base`/`base_v` (uids), merged into the latest revision.

    Returns (result uids, result verified, the caller's new copy in uids, its verified). When the caller's
    copy is not `known` (this instance forgot it), every pixel verified since is kept unless re-verified."""
    shown, shown_v = view(base, base_v, uid_to_index)  # what the caller holds (classes it knows)
    changed = labels != shown
    new = np.where(changed, uids_of(labels, class_uids), base)
    new_v = shown_v if mask is None else mask
    if mark_changed_verified:
        new_v = new_v | changed
    if known:
        result, result_v = merge_edit(latest, latest_v, new, new_v, changed | (new_v != shown_v))
    else:
        keep = latest_v & ~new_v
        result, result_v = np.where(keep, latest, new), new_v | latest_v
    return result, result_v, new, new_v


def merge_verified(latest_v: np.ndarray, base: np.ndarray, base_v: np.ndarray, known: bool, mask: np.ndarray,
                   uid_to_index: Mapping[int, int]) -> np.ndarray:
    """set_verified: only the flags the caller changed relative to its copy are taken from `mask`."""
    shown_v = view(base, base_v, uid_to_index)[1]
    return np.where(mask != shown_v, mask, latest_v) if known else mask | latest_v
