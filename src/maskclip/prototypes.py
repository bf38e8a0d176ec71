"""Learning from verified pixels at once: per-class visual prototypes in CLIP's dense feature space.

A correction should help every image immediately, not only the pixels it paints until a MaskCLIP+ run.
Each class's prototype is the mean of the L2-normalised dense features under its verified pixels over the
whole project (each patch weighted by the share of it the class's verified pixels cover). The sums are
kept per image, so a changed image replaces only its own contribution (no other image is re-read).

Scores then blend MaskCLIP's text cosine t_c with a visual cosine v_c = cos(feature, prototype_c), at
each pixel, over the classes with a prototype ("known"):
    v'_c = v_c - mean_k(v_k) + mean_k(t_k)                  (k: the known classes at this pixel)
    score_c = (1 - weight) * t_c + weight * v'_c            for known classes
    score_c = t_c                                           for the others
before prompt denoising, softmax and key smoothing, which then work as always. Visual cosines run higher
than text cosines (0.5-0.9 against 0.2-0.3); blended raw, they lifted every known class above the classes
nobody had verified yet, so a few verified images made MaskCLIP worse (toy CLIP: 0.296 -> 0.249 mIoU with
5). Moved to the text scores' level at each pixel, the visual term ranks the known classes among themselves
with its own spread: a class nobody has verified keeps its chance, and where the text knows nothing (its
scores flat) the corrections still decide. Mapping the spread onto the text's too was tried: safer with
few examples on the toy CLIP, but it silences the term where the text is flat (bench/results.md). Weight 0
is MaskCLIP unchanged. The prototypes work on whatever dense features the model caches (any dense mode,
any architecture).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .defaults import UNLABELLED
from .errors import MaskCLIPError
from .verified_sync import VerifiedPixelSync

DEFAULT_WEIGHT = 0.5


def check_weight(weight: float) -> float:
    weight = float(weight)
    if not 0.0 <= weight <= 1.0:
        raise MaskCLIPError(f"the weight of the learned visual term must lie in [0, 1], got {weight}")
    return weight


def patch_class_weights(labels: np.ndarray, verified: np.ndarray, grid: tuple[int, int],
                        classes: Iterable[int]) -> dict[int, torch.Tensor]:
    """Per class, the share [h*w] of each patch covered by verified pixels of that class (area resampling)."""
    out = {}
    for c in classes:
        mask = torch.from_numpy(np.ascontiguousarray(verified & (labels == c))).float()[None, None]
        share = F.adaptive_avg_pool2d(mask, grid)[0, 0].flatten()
        if float(share.sum()) > 0:
            out[int(c)] = share
    return out


@dataclass
class ClassPrototypes:
    """Sums of verified-pixel features per class name, kept per image so images update independently.
    Thread-safe: a GUI thread may teach while a worker segments with it."""

    _images: dict[str, dict[str, tuple[torch.Tensor, float]]] = field(default_factory=dict)
    _sums: dict[str, torch.Tensor] = field(default_factory=dict)
    _weights: dict[str, float] = field(default_factory=dict)
    version: int = 0  # bumped on every change (a GUI redraws when it moves)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def set_image(self, image_id: str, feature_maps: Sequence[torch.Tensor], labels: np.ndarray,
                  verified: np.ndarray, class_names: Sequence[str]) -> None:
        """Replace one image's contribution. feature_maps: [D, h, w] per scale (any scales, any dense mode);
        labels: HxW class indices into class_names (255 = unlabelled); verified: HxW bool."""
        labels = np.asarray(labels)
        verified = np.asarray(verified, dtype=bool) & (labels != UNLABELLED)
        present = [int(c) for c in np.unique(labels[verified]) if int(c) < len(class_names)]
        contribution: dict[str, tuple[torch.Tensor, float]] = {}
        for features in feature_maps:
            features = features.detach().to("cpu", torch.float32)
            unit = F.normalize(features.flatten(1), dim=0)  # [D, N]
            for c, share in patch_class_weights(labels, verified, tuple(features.shape[1:]), present).items():
                total, weight = contribution.get(class_names[c], (0.0, 0.0))
                contribution[class_names[c]] = (total + (unit @ share).double(), weight + float(share.sum()))
        with self._lock:
            self._remove(image_id)
            if contribution:
                self._images[image_id] = contribution
                for name, (total, weight) in contribution.items():
                    self._sums[name] = self._sums.get(name, 0.0) + total
                    self._weights[name] = self._weights.get(name, 0.0) + weight
            self.version += 1

    def remove_image(self, image_id: str) -> None:
        with self._lock:
            if image_id in self._images:
                self._remove(image_id)
                self.version += 1

    def _remove(self, image_id: str) -> None:
        for name, (total, weight) in self._images.pop(image_id, {}).items():
            self._sums[name] = self._sums[name] - total
            self._weights[name] -= weight
            if self._weights[name] <= 1e-9:
                del self._sums[name], self._weights[name]

    def clear(self) -> None:
        with self._lock:
            self._images.clear(), self._sums.clear(), self._weights.clear()
            self.version += 1

    @property
    def image_ids(self) -> list[str]:
        with self._lock:
            return list(self._images)

    def known(self) -> dict[str, float]:
        """Classes with a prototype and their verified area (in patches)."""
        with self._lock:
            return dict(self._weights)

    def vectors(self, class_names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(known [K] bool, prototypes [K, D] unit vectors with zero rows where unknown).

        Plain cosines to the class means: centring on the mean verified feature (SimpleShot) was measured
        and lost on both benchmarks (bench/results.md)."""
        with self._lock:
            sums = dict(self._sums)
        known = torch.tensor([n in sums for n in class_names], dtype=torch.bool)
        if not known.any():
            return known, torch.zeros(len(class_names), 0)
        dim = next(iter(sums.values())).shape[0]
        rows = [F.normalize(sums[n].float(), dim=0) if n in sums else torch.zeros(dim) for n in class_names]
        return known, torch.stack(rows)

@dataclass(frozen=True)
class LearnedTerm:
    """What `MaskCLIP.segment(learned=...)` blends into the text scores: prototypes (read at call time) and
    the weight."""

    prototypes: ClassPrototypes
    weight: float = DEFAULT_WEIGHT

    def blend(self, scores: torch.Tensor, features: torch.Tensor, row_names: Sequence[str], **_context
              ) -> torch.Tensor:
        """Text cosine scores [R, N] (one row per prompt row, `row_names` its output class) and dense features
        [D, N] -> blended scores [R, N], before prompt denoising, softmax and key smoothing."""
        weight = check_weight(self.weight)
        known, vectors = self.prototypes.vectors(row_names)
        if weight == 0.0 or not known.any():
            return scores
        vectors = vectors[known].to(features.device)
        if vectors.shape[1] != features.shape[0]:
            raise MaskCLIPError(f"the learned prototypes have {vectors.shape[1]} channels but the model's dense "
                                f"features have {features.shape[0]}: they were learned with another model")
        known = known.to(scores.device)
        text = scores[known]
        if len(text) < 2:  # one known class: nothing to rank it against
            return scores
        visual = vectors @ F.normalize(features, dim=0)
        levelled = visual - visual.mean(dim=0) + text.mean(dim=0)  # at the text scores' level, pixel by pixel
        out = scores.clone()
        out[known] = (1.0 - weight) * text + weight * levelled
        return out


class ProjectPrototypes(VerifiedPixelSync):
    """A project's class prototypes for one model and scale set, kept in step with its verified pixels.

    `sync` visits only images whose label revision changed since it last saw them (a stroke re-reads one
    image); another project, model or set of class names starts over (see maskclip.verified_sync).
    """

    def __init__(self, scales: Sequence[int], window: int | None = None, stride: int | None = None, *,
                 dense_mode: str | None = None, window_norm: bool | None = None):
        super().__init__(ClassPrototypes(), scales, window, stride, dense_mode=dense_mode, window_norm=window_norm)

    @property
    def prototypes(self) -> ClassPrototypes:
        return self.store

    def known(self) -> dict[str, float]:
        """Classes with a prototype and their verified area (in patches)."""
        return self.prototypes.known()

    def term(self, weight: float = DEFAULT_WEIGHT) -> LearnedTerm:
        return LearnedTerm(self.prototypes, check_weight(weight))
