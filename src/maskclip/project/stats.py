"""What the image list, `project status` and training read about a project: per-image state, per-class pixel
counts, and damaged images, from the state files' counts (through the summary cache), decoding no image.
"""
from __future__ import annotations

import numpy as np

from . import catalogue, files, revisions
from .records import ImageState


def counts_now(p, state: dict) -> tuple[list[int], list[int]]:
    """Per current class (labelled, verified) pixel counts of a state, through the uid mapping."""
    labelled = [0] * len(p._classes)
    verified = [0] * len(p._classes)
    for uid, n in state.get("counts", {}).items():
        i = p._uid_to_index.get(int(uid))
        if i is not None:
            labelled[i] += n
    for uid, n in state.get("verified_counts", {}).items():
        i = p._uid_to_index.get(int(uid))
        if i is not None:
            verified[i] += n
    return labelled, verified


def list_images(p) -> list[ImageState]:
    states = revisions.all_states(p)
    out = []
    for rec in p._records:
        state = states.get(rec.id, {})
        labelled, verified = counts_now(p, state)
        stale = catalogue.current_hash(p, rec) != rec.sha256 or (bool(state)
                                                                 and state.get("image_sha256") != rec.sha256)
        out.append(ImageState(rec.id, p.image_path(rec.id), rec.height, rec.width, int(state.get("rev", 0)),
                              sum(labelled), sum(verified), stale, int(state.get("verified_background", 0))))
    return out


def image_state(p, image_id: str) -> ImageState:
    rec = p.record(image_id)
    state = revisions.state(p, image_id)
    labelled, verified = counts_now(p, state)
    return ImageState(rec.id, p.image_path(rec.id), rec.height, rec.width, int(state.get("rev", 0)),
                      sum(labelled), sum(verified), p.is_stale(image_id), int(state.get("verified_background", 0)))


def class_totals(p, images: list[ImageState]) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (labelled, verified) pixel sums over the non-stale images of a fresh list_images()."""
    labelled = np.zeros(len(p._classes), np.int64)
    verified = np.zeros(len(p._classes), np.int64)
    summary = revisions.load_summary(p)
    for s in images:
        if not s.stale and s.rev:
            n, nv = counts_now(p, summary.get(s.id, {}).get("state", {}))
            labelled += np.asarray(n, np.int64)  # (an empty list would be float64)
            verified += np.asarray(nv, np.int64)
    return labelled, verified


def class_pixel_counts(p, verified_only: bool) -> dict[str, int]:
    labelled, verified = class_totals(p, p.list_images())
    return dict(zip(p.class_names, map(int, verified if verified_only else labelled)))


def status(p) -> dict:
    states = p.list_images()
    fresh = [s for s in states if not s.stale]
    pixels = sum(s.pixels for s in fresh)
    labelled, verified = class_totals(p, states)
    return {
        "project": str(p.root),
        "images": len(states),
        "broken": p.broken_images(),
        "labelled": sum(1 for s in fresh if s.labelled_pixels),
        "verified_images": sum(1 for s in fresh if s.status == "verified"),
        "stale": [s.id for s in states if s.stale],
        "skipped_at_import": [{"path": q, "reason": r} for q, r in p.skipped_images],
        "labelled_fraction": sum(s.labelled_pixels for s in fresh) / pixels if pixels else 0.0,
        "verified_fraction": sum(s.verified_pixels for s in fresh) / pixels if pixels else 0.0,
        "classes": p.class_names,
        "class_pixels": dict(zip(p.class_names, map(int, labelled))),
        "class_verified_pixels": dict(zip(p.class_names, map(int, verified))),
    }


def broken_images(p) -> list[dict]:
    broken = []
    states = revisions.all_states(p)
    for rec in p._records:
        if rec.id in p._state_errors:
            broken.append({"id": rec.id, "problem": p._state_errors[rec.id]})
            continue
        state = states.get(rec.id, {})
        for key in ("labels", "verified"):
            if state.get(key):
                problem = files.png_problem(p._ann_dir(rec.id) / state[key])
                if problem:
                    broken.append({"id": rec.id, "problem": f"current {key} file {problem}"})
                    break
    return broken
