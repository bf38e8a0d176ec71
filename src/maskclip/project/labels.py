"""Reading and saving one image's labels: each save is read-latest, merge (merge.py), commit (revisions.py)
under the image's inter-process lock, so concurrent writers merge instead of overwriting each other.

Functions take the Project `p`; the Project's methods of the same names serialise them (its thread lock).
Revisions are read through `p._uid_labels`, the one read of a stored revision.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..validation import check_probability
from . import catalogue, confidence as confidence_store, merge, revisions
from .records import ImageRecord, ProjectError
from .schema import UNLABELLED, check_labels, check_mask


def get_labels_and_verified(p, image_id: str, allow_stale: bool) -> tuple[np.ndarray, np.ndarray]:
    rec = p.record(image_id)
    if not allow_stale:
        catalogue.check_not_stale(p, image_id)
    uids, verified = p._uid_labels(image_id, revisions.state(p, image_id), (rec.height, rec.width))
    p._held.hold(image_id, uids, verified)
    return merge.view(uids, verified, p._uid_to_index)


def _latest_and_base(p, image_id: str, state: dict, rec: ImageRecord, held: tuple[np.ndarray, np.ndarray] | None):
    """(latest uids, latest verified, base uids, base verified, base known): latest is what is committed,
    base the copy the caller's edit started from (`held` when the caller passed it, else what this
    instance remembers; the latest revision for a caller that never read the image)."""
    latest, latest_v = p._uid_labels(image_id, state, (rec.height, rec.width))
    if held is None:
        held = p._held.get(image_id)
    if held is None:
        return latest, latest_v, latest, latest_v, not p._held.forgotten(image_id)
    return latest, latest_v, held[0], held[1], True


def _caller_base(p, base, rec: ImageRecord) -> tuple[np.ndarray, np.ndarray]:
    """A caller's (labels, verified) in current class indices -> (uids, verified)."""
    if not isinstance(base, (tuple, list)) or len(base) != 2:
        raise ProjectError("base must be the (labels, verified) pair the edit started from")
    return merge.uids_of(check_labels(base[0], rec, len(p._classes)), p._class_uids()), check_mask(base[1], rec)


def set_labels(p, image_id: str, labels, verified, mark_changed_verified: bool, source: str, base) -> np.ndarray:
    rec = p.record(image_id)
    catalogue.check_not_stale(p, image_id)
    labels = check_labels(labels, rec, len(p._classes))
    mask = None if verified is None else check_mask(verified, rec)
    held = None if base is None else _caller_base(p, base, rec)
    with p._image_lock(image_id):
        state = revisions.state(p, image_id, full=True)
        latest, latest_v, base_u, base_v, known = _latest_and_base(p, image_id, state, rec, held)
        result, result_v, new, new_v = merge.merge_save(latest, latest_v, base_u, base_v, known, labels, mask,
                                                        mark_changed_verified, p._class_uids(), p._uid_to_index)
        stored = revisions.commit(p, image_id, result, result_v, source, state)
        p._held.hold(image_id, new, new_v)  # the caller keeps its copy, not the merged revision
        return stored


def set_verified(p, image_id: str, mask, source: str, base) -> None:
    rec = p.record(image_id)
    catalogue.check_not_stale(p, image_id)
    mask = check_mask(mask, rec)
    held = None if base is None else _caller_base(p, base, rec)
    with p._image_lock(image_id):
        state = revisions.state(p, image_id, full=True)
        latest, latest_v, base_u, base_v, known = _latest_and_base(p, image_id, state, rec, held)
        result_v = merge.merge_verified(latest_v, base_u, base_v, known, mask, p._uid_to_index)
        revisions.commit(p, image_id, latest, result_v, source, state)
        p._held.hold(image_id, base_u, mask)


def project_labels(p, labels, class_names: Sequence[str]) -> np.ndarray:
    labels = np.asarray(labels)
    lut = np.full(max(len(class_names), 1), UNLABELLED, np.uint8)
    for i, name in enumerate(class_names):
        lut[i] = p._name_to_index.get(name, UNLABELLED)
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ProjectError(f"prediction values must lie in 0..{len(class_names) - 1} (one per class name)")
    return lut[labels]


def merge_prediction(p, image_id: str, labels, confidence, class_names: Sequence[str] | None,
                     min_confidence: float, source: str) -> np.ndarray:
    rec = p.record(image_id)
    check_probability(min_confidence, "min_confidence")
    catalogue.check_not_stale(p, image_id)
    pred = np.asarray(labels)
    if pred.shape != (rec.height, rec.width):
        raise ProjectError(f"prediction for {image_id!r} has shape {pred.shape}, "
                           f"image is {(rec.height, rec.width)}")
    if pred.dtype.kind not in "iu":
        raise ProjectError(f"prediction labels must be integers, got dtype {pred.dtype}")
    if class_names is not None:
        pred = project_labels(p, pred, class_names)
    pred = check_labels(pred, rec, len(p._classes))
    if confidence is not None:
        conf = np.asarray(confidence)
        if conf.shape != pred.shape:
            raise ProjectError(f"confidence has shape {conf.shape}, labels have {pred.shape}")
        pred = np.where(conf >= min_confidence, pred, UNLABELLED).astype(np.uint8)
    with p._image_lock(image_id):
        state = revisions.state(p, image_id, full=True)
        old, verified = p._uid_labels(image_id, state, (rec.height, rec.width))
        merged = merge.merge_prediction(old, verified, merge.uids_of(pred, p._class_uids()))
        stored = revisions.commit(p, image_id, merged, verified, source, state)
        if confidence is not None:  # what the review tools rank and show (a prediction never verifies)
            confidence_store.write(p, image_id, conf, verified, source)
        return stored


def clear_labels(p, image_id: str) -> None:
    p.record(image_id)
    with p._image_lock(image_id):
        try:
            state = revisions.state(p, image_id, full=True)
        except ProjectError:  # a damaged state.json: clearing starts the image over
            state = {}
        revisions.commit(p, image_id, None, None, "clear", state)


def get_revision(p, image_id: str, rev: int) -> tuple[np.ndarray, np.ndarray]:
    rec = p.record(image_id)
    entry = revisions.find_revision(p, image_id, rev)
    return merge.view(*p._uid_labels(image_id, entry, (rec.height, rec.width)), p._uid_to_index)


def restore_revision(p, image_id: str, rev: int) -> None:
    rec = p.record(image_id)
    catalogue.check_not_stale(p, image_id)
    with p._image_lock(image_id):
        entry = revisions.find_revision(p, image_id, rev)
        labels, verified = p._uid_labels(image_id, entry, (rec.height, rec.width))
        revisions.commit(p, image_id, labels if entry.get("labels") else None, verified, f"restore r{rev}",
                         revisions.state(p, image_id, full=True))
