"""Keeping a per-project learner in step with the project's verified pixels (shared by the text-prior learner
and the class prototypes): which images changed since the last look, and re-reading one image's verified
pixels with its dense features (from the model's cache when it has them, so an image already segmented costs
no encoder run). Another project, model, dense mode or set of class names starts over.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np


class VerifiedPixelSync:
    """Base of `learner.ProjectLearner` and `prototypes.ProjectPrototypes`. Subclasses give `store` (an object
    with set_image / remove_image / clear) and may override `feature_maps` (the per-scale feature maps the
    store learns from)."""

    def __init__(self, store, scales: Sequence[int], window: int | None = None, stride: int | None = None, *,
                 dense_mode: str | None = None, window_norm: bool | None = None):
        self.store = store
        self.scales = tuple(int(s) for s in scales)
        self.window, self.stride = window, stride
        self.dense_mode, self.window_norm = dense_mode, window_norm  # None: the model's defaults
        self._revisions: dict[str, int] = {}  # image id -> label revision last read
        self._taught: dict[str, bytes] = {}  # image id -> digest of its verified pixels and their labels
        self._context: tuple | None = None

    def feature_kwargs(self) -> dict:
        """The `MaskCLIP.image_features` arguments learned on (None = the model's default)."""
        extra = {k: v for k, v in (("window", self.window), ("stride", self.stride), ("dense_mode", self.dense_mode),
                                   ("window_norm", self.window_norm)) if v is not None}
        return {"scales": self.scales, **extra}

    def feature_maps(self, model, image: np.ndarray) -> list:
        """The image's dense feature maps, one per scale."""
        return [m["features"] for m in model.image_features(image, **self.feature_kwargs())]

    def _check_context(self, model, project) -> None:
        context = (repr(model.signature), self.dense_mode or model.dense_mode, str(project.root),
                   tuple(project.class_names))
        if context != self._context:
            self.store.clear()
            self._revisions.clear()
            self._taught.clear()
            self._context = context

    def pending(self, model, project) -> list[str]:
        """Images whose verified pixels may have changed since the last sync (stale images are dropped)."""
        self._check_context(model, project)
        out = []
        for state in project.list_images():
            seen = self._revisions.get(state.id)
            if state.stale:
                if seen is not None:
                    out.append(state.id)
            elif (state.verified_pixels > 0 or seen is not None) and seen != state.rev:
                out.append(state.id)
        return out

    def update_image(self, model, project, image_id: str, image: np.ndarray | None = None) -> None:
        """Re-read one image's verified pixels (its features from the cache, or encoded now). A new label
        revision whose verified pixels and their labels are unchanged (a stored prediction) leaves the store
        as it was, so the learner is not refitted for it."""
        self._check_context(model, project)
        state = project.image_state(image_id)
        if state.stale or state.verified_pixels == 0:
            self.store.remove_image(image_id)
            self._taught.pop(image_id, None)
        else:
            labels, verified = project.get_labels_and_verified(image_id)
            digest = _taught_digest(labels, verified)
            if self._taught.get(image_id) != digest:
                image = project.get_image(image_id) if image is None else image
                self.store.set_image(image_id, self.feature_maps(model, image), labels, verified,
                                     project.class_names)
                self._taught[image_id] = digest
        self._revisions[image_id] = state.rev

    def is_cheap(self, model, image: np.ndarray) -> bool:
        """Whether updating this image runs no encoder (its features are in memory)."""
        return model.has_features(image, **self.feature_kwargs())

    def sync(self, model, project, progress=None) -> int:
        """Bring the learner up to date; returns how many images were re-read."""
        ids = self.pending(model, project)
        for done, image_id in enumerate(ids, start=1):
            self.update_image(model, project, image_id)
            if progress is not None:
                progress(done, len(ids))
        return len(ids)


def _taught_digest(labels: np.ndarray, verified: np.ndarray) -> bytes:
    """What an image teaches: where its verified pixels are and their labels."""
    verified = np.ascontiguousarray(verified, dtype=bool)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(verified.shape).encode())
    digest.update(np.packbits(verified).tobytes())
    digest.update(np.ascontiguousarray(np.asarray(labels)[verified]).tobytes())
    return digest.digest()
