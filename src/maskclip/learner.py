"""Learning from verified pixels with the text as the prior: a per-project classifier that starts at MaskCLIP.

MaskCLIP scores a patch feature f (unit length, as `segment` scores it) against each prompt row r by the
cosine t_r . f. This learner fits, per project, a multinomial logistic regression on the same features

    score_r(f) = w_r . f + b_r,      p(class c | f) = sum_{r in c} softmax_r(TEMPERATURE * score)

whose weights start at the text embeddings (w_r = t_r, b_r = 0) and are pulled back to them:

    loss = sum_i a_i * CE(targets_i, p(. | f_i)) + pull * sum_r (|w_r - t_r|^2 + b_r^2)

over the verified patches i (a_i: the share of the patch that is verified; targets_i: each label's share of
those verified pixels). The pull is fixed and the data term is a sum, so the text dominates with a few
verified patches and the data with many. With no verified pixel the scores are MaskCLIP's exactly. Only
the rows of classes somebody verified move (the "taught" classes); the others keep their text weights, so
a class nobody verified competes with its text score as before. Confirmed background (verified pixels left
unlabelled, 255) teaches the rows of the output class "background" (the background prompts, merged into it
by `segment`), exactly as a class's verified pixels teach that class: a class's several rows (background
prompts, split synonyms) share its probability (sum), as `segment` merges them (max).

The learned scores replace the text scores before prompt denoising, softmax and key smoothing, so every
dense mode and its KS/PD defaults apply after them, as with the text alone. The verified patches are kept
per image: a stroke re-reads only its own image (features from the cache); the fit itself (L-BFGS, a few
hundred ms for thousands of patches) runs on the first segmentation after a change, or ahead of it with
`ProjectLearner.fit` (a GUI runs that in a worker). Measured against the class-mean prototypes
(`maskclip.prototypes`) and an ilastik-style random forest in bench/bench_learn_from_verified.py.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .defaults import UNLABELLED
from .errors import MaskCLIPError
from .scoring import TEMPERATURE
from .settings import LEARN_DEFAULTS, LEARNERS
from .verified_sync import VerifiedPixelSync

DEFAULT_PULL = 10.0  # chosen by measurement (bench/results.md: pulls 1 / 10 / 100, sclip), see README
BACKGROUND = "background"  # the output class confirmed background teaches (what `segment` names it)
MAX_ITER = 100


def check_pull(pull: float) -> float:
    pull = float(pull)
    if not pull > 0:
        raise MaskCLIPError(f"the pull of the learner toward the text must be positive, got {pull}")
    return pull


def verified_patch_targets(labels: np.ndarray, verified: np.ndarray, grid: tuple[int, int],
                           n_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The verified patches of one image on a feature grid: (patch indices [n], targets [n, n_classes + 1]
    (each label's share of the patch's verified pixels; the last column is confirmed background), verified
    share of each patch [n]). Labels >= n_classes other than 255 are ignored."""
    labels = np.asarray(labels)
    verified = np.asarray(verified, dtype=bool)
    present = [int(c) for c in np.unique(labels[verified])]
    shares = torch.zeros(n_classes + 1, grid[0] * grid[1])
    for c in present:
        column = n_classes if c == UNLABELLED else c
        if column > n_classes or (c >= n_classes and c != UNLABELLED):
            continue
        mask = torch.from_numpy(np.ascontiguousarray(verified & (labels == c))).float()[None, None]
        shares[column] = F.adaptive_avg_pool2d(mask, grid)[0, 0].flatten()
    total = shares.sum(0)
    index = torch.nonzero(total > 1e-6).flatten()
    return index, (shares[:, index] / total[index]).T.contiguous(), total[index]


@dataclass(frozen=True)
class VerifiedMap:
    """One image at one scale: the scored features x [N, D] of its patches, and its verified patches: their
    indices [n] into x, targets [n, columns] and verified shares [n]."""

    x: torch.Tensor
    index: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor


@dataclass
class VerifiedSamples:
    """The verified patches of a project (`VerifiedMap` per image and scale), kept per image so images update
    independently. Columns of the targets: the project's class names, then BACKGROUND (confirmed
    background). Thread-safe: a GUI thread may teach while a worker fits or segments."""

    columns: list[str] = field(default_factory=list)
    _images: dict[str, list[VerifiedMap]] = field(default_factory=dict)
    version: int = 0  # bumped on every change
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def set_image(self, image_id: str, feature_maps: Sequence[torch.Tensor], labels: np.ndarray,
                  verified: np.ndarray, class_names: Sequence[str]) -> None:
        """Replace one image's patches. feature_maps: [D, h, w] per scale, as `segment` scores them (unit
        vectors, or window-normalised averages); labels: HxW indices into class_names (255 = unlabelled); verified: HxW bool."""
        columns = [*class_names, BACKGROUND] if BACKGROUND not in class_names else [*class_names, " background"]
        maps = []
        for features in feature_maps:
            features = features.detach().to("cpu", torch.float32)
            index, targets, weights = verified_patch_targets(labels, verified, tuple(features.shape[1:]),
                                                             len(class_names))
            if len(index):
                x = features.flatten(1)[:, index].T.contiguous()  # the verified patches only
                maps.append(VerifiedMap(x, torch.arange(len(index)), targets, weights))
        with self._lock:
            if columns != self.columns:
                self._images.clear()
                self.columns = columns
            self._images.pop(image_id, None)
            if maps:
                self._images[image_id] = maps
            self.version += 1

    def remove_image(self, image_id: str) -> None:
        with self._lock:
            if self._images.pop(image_id, None) is not None:
                self.version += 1

    def clear(self) -> None:
        with self._lock:
            self._images.clear()
            self.version += 1

    @property
    def image_ids(self) -> list[str]:
        with self._lock:
            return list(self._images)

    def snapshot(self) -> tuple[int, list[str], list[VerifiedMap]]:
        """(version, columns, every image's maps)."""
        with self._lock:
            return self.version, list(self.columns), [m for maps in self._images.values() for m in maps]

    def taught(self) -> dict[str, float]:
        """Verified area per column name (in patches, summed over scales), for the columns with any."""
        _version, columns, maps = self.snapshot()
        if not maps:
            return {}
        area = sum((m.targets * m.weights[:, None]).sum(0) for m in maps)
        return {name: float(a) for name, a in zip(columns, area) if a > 1e-9}


def fit_text_prior(text: torch.Tensor, row_class: Sequence[int], maps: Sequence[VerifiedMap],
                   pull: float = DEFAULT_PULL, temperature: float = TEMPERATURE, max_iter: int = MAX_ITER, free: Sequence[bool] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit (W [R, D], b [R]) starting at (text, 0) with an L2 pull of strength `pull` back to them.

    text: [R, D] prompt rows; row_class: the output class (column of the maps' targets) of each row; each
    verified patch is scored on its own (fitting through key smoothing, each patch's probabilities mixed
    over its image as `segment` does, was measured and lost, bench/results.md). free: which rows move (default: the rows of classes with any target mass); the others
    stay at (text, 0)."""
    check_pull(pull)
    text = text.detach().float().cpu()
    rows = torch.as_tensor(list(row_class), dtype=torch.long)
    n_classes = maps[0].targets.shape[1]
    if free is None:
        taught = sum((m.targets * m.weights[:, None]).sum(0) for m in maps) > 0
        free = taught[rows]
    free = torch.as_tensor(list(free), dtype=torch.bool)
    if not free.any():
        return text.clone(), torch.zeros(len(text))
    with torch.inference_mode(False), torch.enable_grad():  # `segment` runs under inference mode
        groups = [(torch.cat([m.x[m.index] for m in maps]).clone(), torch.cat([m.targets for m in maps]).clone(),
                   torch.cat([m.weights for m in maps]).clone())]
        delta, bias = _minimise(text.clone(), rows.clone(), n_classes, free.clone(), groups, pull, temperature,
                                max_iter)
    free_idx = torch.nonzero(free).flatten()
    w, b = text.clone(), torch.zeros(len(text))
    w[free_idx] += delta.detach()
    b[free_idx] = bias.detach()
    return w, b


def _minimise(text, rows, n_classes, free, groups, pull, temperature, max_iter):
    member = (F.one_hot(rows, n_classes).float().T - 1) * 1e4  # [C, R]: 0 for the class's rows, -1e4 others
    free_idx = torch.nonzero(free).flatten()
    fixed = [x @ text.T for x, *_ in groups]  # [N, R]
    delta = torch.zeros(len(free_idx), text.shape[1], requires_grad=True)
    bias = torch.zeros(len(free_idx), requires_grad=True)
    optimizer = torch.optim.LBFGS([delta, bias], lr=1, max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-6, tolerance_change=1e-9, history_size=20)

    def closure():
        optimizer.zero_grad()
        loss = pull * ((delta ** 2).sum() + (bias ** 2).sum())
        for (x, t, a), scores in zip(groups, fixed):
            scores = scores.index_add(1, free_idx, x @ delta.T + bias)
            log_rows = torch.log_softmax(temperature * scores, dim=1)  # [N, R]
            log_class = torch.logsumexp(log_rows[:, None, :] + member[None], dim=2)  # [N, C]: its rows' share
            loss = loss - (a[:, None] * t * log_class).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return delta.detach(), bias.detach()


def _digest(text: torch.Tensor, row_names: Sequence[str]) -> str:
    h = hashlib.sha1(text.detach().float().cpu().numpy().tobytes())
    h.update("\x00".join(row_names).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class TextPriorTerm:
    """What `MaskCLIP.segment(learned=...)` uses: the learner's scores in place of the text scores (fitted
    on first use for a given set of prompt rows, then cached until the verified pixels change)."""

    learner: "ProjectLearner"

    def blend(self, scores: torch.Tensor, features: torch.Tensor, row_names: Sequence[str], *,
              text: torch.Tensor | None = None, unit: torch.Tensor | None = None,
              temperature: float = TEMPERATURE, **_context) -> torch.Tensor:
        """Text cosine scores [R, N] -> learned scores [R, N] (before PD, softmax and KS). text: the prompt
        rows [R, D]; unit: the features as scored [D, N]; temperature: the dense mode's (the fit's, so that
        its probabilities are those `segment` computes)."""
        if text is None or unit is None:
            raise MaskCLIPError("the text-prior learner needs the prompt rows and the scored features")
        fitted = self.learner.fit_rows(text, row_names, temperature)
        if fitted is None:
            return scores
        w, b = fitted
        if w.shape[1] != unit.shape[0]:
            raise MaskCLIPError(f"the learner was fitted on {w.shape[1]}-channel features but the model's dense "
                                f"features have {unit.shape[0]}: it was learned with another model")
        return w.to(unit.device) @ unit + b.to(unit.device)[:, None]


class ProjectLearner(VerifiedPixelSync):
    """A project's text-prior classifier for one model and feature setting, kept in step with its verified
    pixels (`sync`, `update_image`: the same interface as `maskclip.prototypes.ProjectPrototypes`).

    Typical use (the CLI's `project segment --learn-from-verified`, and what a GUI calls)::

        learner = ProjectLearner(scales=(336,))
        learner.sync(model, project)                  # after a stroke: learner.update_image(model, project, id)
        learner.fit(model, project.prompts, project.background)   # optional: fit now (e.g. in a worker)
        seg = model.segment(image, project.prompts, learned=learner.term())
    """

    kind = "text-prior"

    def __init__(self, scales: Sequence[int], window: int | None = None, stride: int | None = None, *,
                 dense_mode: str | None = None, window_norm: bool | None = None, pull: float = DEFAULT_PULL):
        super().__init__(VerifiedSamples(), scales, window, stride, dense_mode=dense_mode, window_norm=window_norm)
        self.pull = check_pull(pull)
        self._fits: dict[str, tuple[int, tuple[torch.Tensor, torch.Tensor]]] = {}
        self._fit_lock = threading.Lock()

    @property
    def samples(self) -> VerifiedSamples:
        return self.store

    @property
    def version(self) -> int:
        return self.samples.version

    def feature_maps(self, model, image: np.ndarray) -> list[torch.Tensor]:
        """The image's dense features as `segment` scores them (unit vectors unless window-normalised)."""
        _mode, o = model.options(self.feature_kwargs().get("dense_mode"), window=self.window, stride=self.stride,
                                 window_norm=self.window_norm)
        features = super().feature_maps(model, image)
        return features if o.window_norm else [F.normalize(m, dim=0) for m in features]

    def taught(self) -> dict[str, float]:
        """Verified area (patches) per class name ("background": confirmed background) - what a GUI shows."""
        return {n.strip(): a for n, a in self.samples.taught().items()}

    known = taught  # the name ProjectPrototypes uses

    # --- fitting -------------------------------------------------------------------------------------
    def fit_rows(self, text: torch.Tensor, row_names: Sequence[str], temperature: float = TEMPERATURE
                 ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(W, b) for these prompt rows (each named by its output class), fitted now unless cached for the
        current verified pixels; None when nothing is verified (the text scores as they are)."""
        key = f"{_digest(text, row_names)}|{float(temperature)}"
        cached = self._fits.get(key)
        if cached is not None and cached[0] == self.samples.version:
            return cached[1]
        with self._fit_lock:
            version, columns, maps = self.samples.snapshot()
            cached = self._fits.get(key)
            if cached is not None and cached[0] == version:
                return cached[1]
            fitted = self._fit(text, row_names, columns, maps, temperature) if maps else None
            self._fits = {key: (version, fitted)}  # one prompt set at a time
            return fitted

    def _fit(self, text, row_names, columns, maps, temperature):
        """The targets mapped onto the output classes of these rows, then `fit_text_prior`."""
        names = list(dict.fromkeys(row_names))  # output classes in row order
        mapping = torch.zeros(len(columns), len(names))
        for j, column in enumerate(columns):
            name = BACKGROUND if column == " background" else column  # confirmed bg when a class is "background"
            if name in names:
                mapping[j, names.index(name)] = 1.0
        kept = []
        for m in maps:
            if m.x.shape[1] != text.shape[1]:
                raise MaskCLIPError(f"the learner's verified features have {m.x.shape[1]} channels but the text "
                                    f"has {text.shape[1]}: they were read with another model")
            t = m.targets @ mapping
            mass = t.sum(1)
            keep = mass > 1e-6  # patches whose verified labels are all outside these prompts teach nothing
            if keep.any():
                kept.append(VerifiedMap(m.x, m.index[keep], t[keep] / mass[keep, None],
                                        m.weights[keep] * mass[keep]))
        if not kept:
            return None
        row_class = [names.index(n) for n in row_names]
        return fit_text_prior(text, row_class, kept, self.pull, temperature)

    def fit(self, model, classes, background, options=None, **fields) -> None:
        """Fit now for the prompts `segment` will get (same classes, background, `options` / option fields),
        e.g. in a worker after a stroke, so that the next redraw only applies the weights."""
        _mode, o = model.options(self.dense_mode, options, **fields)
        text, class_names, groups, _bg = model.encode_prompts(classes, background, o.synonyms == "max")
        row_names = [""] * len(text)
        for c, rows in enumerate(groups):
            for r in rows:
                row_names[r] = class_names[c]
        self.fit_rows(text.to("cpu"), row_names, o.temperature)

    def term(self, weight: float | None = None) -> TextPriorTerm:
        """The term `segment(learned=...)` takes (`weight` is accepted for ProjectPrototypes' callers and
        ignored: the pull is fixed by measurement)."""
        return TextPriorTerm(self)


DEFAULT_LEARNER = LEARN_DEFAULTS["learner"]  # "prototypes": maskclip.prototypes, kept for comparison


def project_learner(kind: str, options: dict, dense_mode: str | None = None, pull: float = DEFAULT_PULL):
    """The learner `project segment --learn-from-verified` (and the annotator) uses, on the features a
    segmentation with `options` (`MaskCLIP.segment` keyword arguments: scales, window, stride, window_norm)
    scores: `ProjectLearner` ("text-prior", the default) or `maskclip.prototypes.ProjectPrototypes`."""
    args = (tuple(options["scales"]), options.get("window"), options.get("stride"))
    if kind == "text-prior":
        return ProjectLearner(*args, dense_mode=dense_mode, window_norm=options.get("window_norm"), pull=pull)
    if kind == "prototypes":
        from .prototypes import ProjectPrototypes

        return ProjectPrototypes(*args, dense_mode=dense_mode, window_norm=options.get("window_norm"))
    raise MaskCLIPError(f"unknown learner {kind!r}; choose one of {', '.join(LEARNERS)}")
