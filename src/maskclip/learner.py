"""Learning from verified pixels with the text as the prior: a per-project classifier that starts at MaskCLIP.

MaskCLIP scores a patch feature f (unit length, as `segment` scores it) against each prompt row r by the
cosine t_r . f. This learner fits, per project, a multinomial logistic regression on the same features

    score_r(f) = w_r . f + b_r,      p(class c | f) = sum_{r in c} softmax_r(TEMPERATURE * score)

whose weights start at the text embeddings (w_r = t_r, b_r = 0) and are pulled back to them:

    loss = sum_i a_i * CE(targets_i, p(. | f_i)) + pull * sum_r (|w_r - t_r|^2 + b_r^2)

over the verified patches i (a_i: the share of the patch that is verified; targets_i: each label's share of
those verified pixels). The pull is fixed and the data term is a sum, so the text dominates with a few
verified patches and the data with many. With no verified pixel the output is MaskCLIP's exactly. Only
the rows of classes somebody verified move (the "taught" classes); the others keep their text weights, so
a class nobody verified competes with its text score as before. Confirmed background (verified pixels left
unlabelled, 255) teaches the rows of the output class "background" (the background prompts, merged into it
by `segment`), exactly as a class's verified pixels teach that class: a class's several rows (background
prompts, split synonyms) share its probability (sum), as `segment` merges them (max).

Where the learned scores go, and how far they are trusted (measured, bench/results.md "through the project"):

* The learned scores go through the dense mode's pipeline *without key smoothing* (PD and softmax as the mode
  says). Key smoothing mixes each patch's probabilities over the image; the learner's confident background
  then swamps small objects (MaskCLIP, 5 verified scenes: 0.259 without KS, 0.220 with it). The text keeps
  its full pipeline (PD, softmax, KS), and the output is the mixture
  (1 - trust) * p_text + trust * p_learned (per prompt row; `segment` merges rows by max as before).
* trust in {0, 0.25, ..., 1} is chosen by cross-validation across the verified images (`choose_trust`):
  fitted without an image, which mixture segments that image's verified patches best (mIoU). Trust 0 is the
  text alone, and a trust above 0 must beat it on held-out verified pixels by MIN_GAIN, so the learner does
  not replace the text where it would not have helped. One verified image cannot show that the learner
  generalises (its halves are alike), so there it must double the text's held-out mIoU: it is trusted only
  where the text fails outright (random weights, a domain CLIP does not know).
* Tried and dropped: the learned correction as a residual on the log-probabilities after KS (fitted on the
  raw or on the smoothed probabilities: worse, it over-corrects the flatter smoothed scores), a softmax over
  the taught classes only, class-balanced weights, other pulls.
* Pixel-level features (`maskclip.pixel_features`: colour and edge strength at several scales, per patch)
  are an option: `pixel_features=True`, or "auto" (cross-validation decides, per project, whether they add
  PIXEL_MARGIN). Always on they cost the toy scenes (CLIP already sees colour there); on CamVid with random
  weights they are what the learner needs. Off by default: on the toy benchmark "auto" chose them where
  they lost (MaskCLIP, 20 verified scenes: 0.288 against 0.359 without).

The verified patches are kept per image (every patch's features and keys, since PD and KS look across the
image): a stroke re-reads only its own image (features from the cache); the fit (L-BFGS; with the
cross-validation, one fit per fold more) runs on the first segmentation after a change, or ahead of it with
`ProjectLearner.fit` (a GUI runs that in a worker). Measured against the class-mean prototypes
(`maskclip.prototypes`) and an ilastik-style random forest in bench/bench_learner.py.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .defaults import UNLABELLED
from .errors import MaskCLIPError
from .options import SegmentOptions
from .pixel_features import patch_pixel_features
from .scoring import TEMPERATURE, pipeline_probabilities
from .settings import LEARN_DEFAULTS, LEARNERS
from .verified_sync import VerifiedPixelSync

DEFAULT_PULL = 10.0  # chosen by measurement (bench/results.md: pulls 1 / 10 / 100, sclip), see README
BACKGROUND = "background"  # the output class confirmed background teaches (what `segment` names it)
MAX_ITER = 100
# pixel-level features (maskclip.pixel_features): False (the default), True, or "auto": used where
# cross-validation across the verified images finds they add PIXEL_MARGIN held-out mIoU (measured: worse on
# the toy scenes when always on, far better on CamVid with random weights; bench/results.md)
PIXEL_FEATURES = False
PIXEL_MARGIN = 0.02


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
    """One image at one scale: the scored features x [N, D] of all its patches (the pipeline the learner
    corrects needs every patch: prompt denoising and key smoothing look across the image), its keys [C, N]
    (None: key smoothing cannot run on it), and its verified patches: their indices [n] into x, targets
    [n, columns] and verified shares [n]."""

    x: torch.Tensor
    index: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor
    keys: torch.Tensor | None = None
    pixels: torch.Tensor | None = None  # [N, P] pixel-level features of the patches (maskclip.pixel_features)

    def subset(self, keep: torch.Tensor) -> "VerifiedMap":
        """The same image with only the verified patches `keep` (bool [n])."""
        return VerifiedMap(self.x, self.index[keep], self.targets[keep], self.weights[keep], self.keys, self.pixels)


@dataclass
class VerifiedSamples:
    """The verified patches of a project (`VerifiedMap` per image and scale), kept per image so images update
    independently. Columns of the targets: the project's class names, then BACKGROUND (confirmed
    background). Thread-safe: a GUI thread may teach while a worker fits or segments."""

    columns: list[str] = field(default_factory=list)
    _images: dict[str, list[VerifiedMap]] = field(default_factory=dict)
    version: int = 0  # bumped on every change
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def set_image(self, image_id: str, feature_maps: Sequence[torch.Tensor | dict], labels: np.ndarray,
                  verified: np.ndarray, class_names: Sequence[str]) -> None:
        """Replace one image's patches. feature_maps, per scale: the features [D, h, w] as `segment` scores
        them (unit vectors, or window-normalised averages), or {"features": ..., "keys": [C, h, w], "pixels":
        [P, h, w]} (keys: key smoothing as `segment` does it; pixels: `maskclip.pixel_features`); labels: HxW
        indices into class_names (255 = unlabelled); verified: HxW bool."""
        columns = [*class_names, BACKGROUND] if BACKGROUND not in class_names else [*class_names, " background"]
        maps = []
        for entry in feature_maps:
            entry = entry if isinstance(entry, dict) else {"features": entry}
            features, keys, pixels = entry["features"], entry.get("keys"), entry.get("pixels")
            features = features.detach().to("cpu", torch.float32)
            index, targets, weights = verified_patch_targets(labels, verified, tuple(features.shape[1:]),
                                                             len(class_names))
            if len(index):
                keys = None if keys is None else keys.detach().to("cpu", torch.float32).flatten(1)
                pixels = None if pixels is None else pixels.to(torch.float32).flatten(1).T.contiguous()
                maps.append(VerifiedMap(features.flatten(1).T.contiguous(), index, targets, weights, keys, pixels))
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
        version, columns, images = self.snapshot_images()
        return version, columns, [m for maps in images for m in maps]

    def snapshot_images(self) -> tuple[int, list[str], list[list[VerifiedMap]]]:
        """(version, columns, the maps of each image): what cross-validation across images needs."""
        with self._lock:
            return self.version, list(self.columns), [list(maps) for maps in self._images.values()]

    def taught(self) -> dict[str, float]:
        """Verified area per column name (in patches, summed over scales), for the columns with any."""
        _version, columns, maps = self.snapshot()
        if not maps:
            return {}
        area = sum((m.targets * m.weights[:, None]).sum(0) for m in maps)
        return {name: float(a) for name, a in zip(columns, area) if a > 1e-9}


# --- the learned scores, their fit and the trust in them ------------------------------------------
@dataclass(frozen=True)
class Residual:
    """The learned classifier and how far to trust it. Learned scores: the text cosines plus
    delta_r . f + bias_r (zero for rows of classes nobody taught), through the dense mode's pipeline without
    key smoothing; the output is (1 - trust) * the text pipeline's probabilities + trust * the learned
    ones. trust in [0, 1] is what cross-validation across the verified images found the learner worth."""

    delta: torch.Tensor  # [R, D]
    bias: torch.Tensor  # [R]
    trust: float

    def learned_probs(self, scores: torch.Tensor, unit: torch.Tensor, options,
                      pixels: torch.Tensor | None = None) -> torch.Tensor:
        """Text cosine scores [R, N], the scored features [D, N] and, when fitted with them, the pixel-level
        features [P, N] -> the learned probabilities [R, N]."""
        dim = unit.shape[0]
        extra = self.delta.shape[1] - dim
        if extra < 0 or (extra > 0 and (pixels is None or pixels.shape[0] != extra)):
            raise MaskCLIPError(f"the learner was fitted on {self.delta.shape[1]}-channel features but the model's "
                                f"dense features have {dim}: it was learned with another model")
        delta, bias = self.delta.to(unit.device), self.bias.to(unit.device)
        learned = scores + delta[:, :dim] @ unit + bias[:, None]
        if extra:
            learned = learned + delta[:, dim:] @ pixels.to(unit.device)
        return pipeline_probabilities(learned, None, without_smoothing(options))

    def apply(self, probs: torch.Tensor, scores: torch.Tensor, unit: torch.Tensor, options,
              pixels: torch.Tensor | None = None) -> torch.Tensor:
        """The text pipeline's row probabilities [R, N] -> the blended ones."""
        if self.trust == 0.0:
            return probs
        return blend(probs, self.learned_probs(scores, unit, options, pixels), self.trust)


# the held-out gain (mIoU of verified patches) a trust above 0 must show over the text alone. Halves of one
# image are not independent (measured: the learner then wins on the other half and loses on other images,
# bench/results.md), so with a single verified image it must at least double the text's held-out mIoU: it
# is trusted only where the text fails outright (random weights, domains CLIP does not know)
MIN_GAIN = 0.01
TRUSTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the trusts cross-validation chooses from (0: the text pipeline alone)
MAX_FOLDS = 5


def blend(plain: torch.Tensor, learned: torch.Tensor, trust: float) -> torch.Tensor:
    """(1 - trust) * the text pipeline's probabilities + trust * the learned ones. A mixture of
    probabilities keeps the text's key smoothing where the learner is unsure; measured against applying the
    learned correction as a residual on the log-probabilities after KS (worse, bench/results.md)."""
    return plain if trust == 0.0 else (1.0 - trust) * plain + trust * learned


def without_smoothing(options):
    """The learned scores skip key smoothing: it mixes each patch's probabilities over the image, and the
    learner's confident background then swamps small objects (measured: bench/results.md)."""
    return replace(options, key_smoothing=False) if options.key_smoothing else options


def fit_residual(text: torch.Tensor, row_class: Sequence[int], maps: Sequence[VerifiedMap],
                 pull: float = DEFAULT_PULL, temperature: float = TEMPERATURE, max_iter: int = MAX_ITER,
                 free: Sequence[bool] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit (delta [R, D], bias [R]) of the learned scores text_r . x + delta_r . x + bias_r on the verified
    patches, with an L2 pull of strength `pull` back to zero (the text):

        loss = sum_i a_i * CE(targets_i, p(. | x_i)) + pull * (|delta|^2 + |bias|^2),
        p_r = softmax_r(temperature * score), p_c = the sum over c's rows

    (a_i: the verified share of patch i). row_class: the output class (column of the maps' targets) of each
    row. free: which rows move (default: those of classes with any target mass); the others keep the text
    score. Each verified patch is scored on its own (fitting through key smoothing was measured and lost)."""
    check_pull(pull)
    text = text.detach().float().cpu()
    rows = torch.as_tensor(list(row_class), dtype=torch.long)
    extra = maps[0].pixels.shape[1] if maps and maps[0].pixels is not None else 0
    delta, bias = torch.zeros(len(text), text.shape[1] + extra), torch.zeros(len(text))
    if not maps:
        return delta, bias
    n_classes = maps[0].targets.shape[1]
    if free is None:
        taught = sum((m.targets * m.weights[:, None]).sum(0) for m in maps) > 0
        free = taught[rows]
    free = torch.as_tensor(list(free), dtype=torch.bool)
    if not free.any():
        return delta, bias
    free_idx = torch.nonzero(free).flatten()
    with torch.inference_mode(False), torch.enable_grad():  # `segment` runs under inference mode
        x = torch.cat([m.x[m.index] for m in maps]).clone()
        base = temperature * (x @ text.T)
        pixels = maps[0].pixels is not None
        if pixels:  # standardised over the verified patches and scaled to unit norm like CLIP's features
            raw = torch.cat([m.pixels[m.index] for m in maps])
            mean, scale = raw.mean(0), raw.std(0, unbiased=False).clamp_min(1e-6) * raw.shape[1] ** 0.5
            x = torch.cat([x, (raw - mean) / scale], dim=1)
        t = torch.cat([m.targets for m in maps]).clone()
        a = torch.cat([m.weights for m in maps]).clone()
        d, c = _minimise(x, t, a, base, rows.clone(), n_classes, free_idx.clone(), pull, temperature, max_iter)
    if pixels:  # fold the standardisation into the weights: they then take the raw pixel features
        d_pix = d[:, text.shape[1]:] / scale
        c = c - d_pix @ mean
        d = torch.cat([d[:, :text.shape[1]], d_pix], dim=1)
    delta[free_idx], bias[free_idx] = d, c
    return delta, bias


def _class_log_probs(logits: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """Row logits [N, R] -> log p(class) [N, C]: the softmax over rows summed over each class's rows."""
    return torch.logsumexp(torch.log_softmax(logits, dim=1)[:, None, :] + member[None], dim=2)


def _membership(rows: torch.Tensor, n_classes: int) -> torch.Tensor:
    return (F.one_hot(rows, n_classes).float().T - 1) * 1e4  # [C, R]: 0 for the class's rows, -1e4 others


def _minimise(x, t, a, base, rows, n_classes, free_idx, pull, temperature, max_iter):
    member = _membership(rows, n_classes)
    delta = torch.zeros(len(free_idx), x.shape[1], requires_grad=True)
    bias = torch.zeros(len(free_idx), requires_grad=True)
    optimizer = torch.optim.LBFGS([delta, bias], lr=1, max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-6, tolerance_change=1e-9, history_size=20)

    def closure():
        optimizer.zero_grad()
        logits = base.index_add(1, free_idx, temperature * (x @ delta.T + bias))
        data = (a[:, None] * t * _class_log_probs(logits, member)).sum()
        loss = pull * ((delta ** 2).sum() + (bias ** 2).sum()) - data
        loss.backward()
        return loss

    optimizer.step(closure)
    return delta.detach(), bias.detach()


def _folds(images: Sequence[Sequence[VerifiedMap]]) -> list[tuple[list[VerifiedMap], list[VerifiedMap]]]:
    """(training maps, held-out maps) per fold: whole images held out (at most MAX_FOLDS folds); with one
    verified image, its verified patches of even and of odd index (alternate columns of the grid, so both
    halves see every region; neighbours are alike, hence the stricter test of `choose_trust`)."""
    if len(images) == 1:
        halves = [(m.subset(m.index % 2 == 0), m.subset(m.index % 2 == 1)) for m in images[0]]
        first, second = [h[0] for h in halves], [h[1] for h in halves]
        return [(first, second), (second, first)]
    k = min(MAX_FOLDS, len(images))
    return [([m for j, maps in enumerate(images) if j % k != f for m in maps],
             [m for j, maps in enumerate(images) if j % k == f for m in maps]) for f in range(k)]


def _class_probs(probs: torch.Tensor, rows: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Row probabilities [R, n] -> class scores [n, C] as `segment` merges rows (max)."""
    out = torch.zeros(probs.shape[1], n_classes)
    for c in range(n_classes):
        mine = rows == c
        if mine.any():
            out[:, c] = probs[mine].amax(0)
    return out


def soft_miou(predicted: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> float:
    """mIoU of the arg-max class [n] against soft targets [n, C] weighted by the verified shares [n], over
    the classes present in the targets or the prediction: the benchmark's metric on the verified patches."""
    hit = F.one_hot(predicted, targets.shape[1]).float() * weights[:, None]
    truth = targets * weights[:, None]
    inter = (hit * targets).sum(0)
    union = hit.sum(0) + truth.sum(0) - inter
    present = union > 1e-9
    return float((inter[present] / union[present]).mean()) if present.any() else 0.0


def choose_trust(text: torch.Tensor, row_class: Sequence[int], images: Sequence[Sequence[VerifiedMap]], options,
                 pull: float = DEFAULT_PULL, trusts: Sequence[float] = TRUSTS) -> float:
    """The trust of `cross_validate`."""
    return cross_validate(text, row_class, images, options, pull, trusts)[0]


def cross_validate(text: torch.Tensor, row_class: Sequence[int], images: Sequence[Sequence[VerifiedMap]], options,
                   pull: float = DEFAULT_PULL, trusts: Sequence[float] = TRUSTS) -> tuple[float, float]:
    """How much to trust the learner, by cross-validation across the verified images: fitted without an
    image, which blend of the text pipeline and the learned probabilities segments that image's verified
    patches best (mIoU pooled over the folds; ties go to the text). Trust 0 (the text alone) is a candidate,
    so the choice never prefers a learner that did worse than the text on held-out verified pixels."""
    rows = torch.as_tensor(list(row_class), dtype=torch.long)
    n_classes = images[0][0].targets.shape[1]
    pooled = {trust: ([], [], []) for trust in trusts}
    for train, held in _folds(images):
        train = [m for m in train if len(m.index)]
        held = [m for m in held if len(m.index)]
        if not train or not held:
            continue
        taught = sum((m.targets * m.weights[:, None]).sum(0) for m in train) > 0
        delta, bias = fit_residual(text, row_class, train, pull, options.temperature, free=taught[rows])
        fitted = Residual(delta, bias, 1.0)
        for m in held:
            scores = text @ m.x.T
            plain = pipeline_probabilities(scores, m.keys, options if m.keys is not None else
                                           without_smoothing(options))[:, m.index]
            pixels = None if m.pixels is None else m.pixels.T
            learned = fitted.learned_probs(scores, m.x.T, options, pixels)[:, m.index]
            for trust in trusts:
                blended = _class_probs(blend(plain, learned, trust), rows, n_classes)
                pooled[trust][0].append(blended.argmax(1))
                pooled[trust][1].append(m.targets)
                pooled[trust][2].append(m.weights)
    if not pooled[trusts[0]][0]:
        return 0.0, 0.0
    quality = [soft_miou(*(torch.cat(part) for part in pooled[trust])) for trust in trusts]
    best = max(range(len(trusts)), key=lambda k: (quality[k], -k))
    needed = max(2 * quality[0], quality[0] + MIN_GAIN) if len(images) == 1 else quality[0] + MIN_GAIN
    return (float(trusts[best]), quality[best] - quality[0]) if quality[best] >= needed else (0.0, 0.0)


def _pipeline_key(o) -> str:
    """What of the options the base probabilities depend on."""
    return (f"{o.temperature}|{o.prompt_denoising}|{o.pd_threshold}|{o.key_smoothing}|{o.ks_variant}|"
            f"{o.ks_threshold}")


def _digest(text: torch.Tensor, row_names: Sequence[str]) -> str:
    h = hashlib.sha1(text.detach().float().cpu().numpy().tobytes())
    h.update("\x00".join(row_names).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class TextPriorTerm:
    """What `MaskCLIP.segment(learned=...)` uses: the learner's correction of the probabilities the dense
    mode's pipeline (PD, softmax, KS) gives (fitted on first use for a given set of prompt rows and options,
    then cached until the verified pixels change)."""

    learner: "ProjectLearner"

    def refine(self, probs: torch.Tensor, scores: torch.Tensor, row_names: Sequence[str], *, text: torch.Tensor,
               unit: torch.Tensor, options, image: np.ndarray | None = None, grid: tuple[int, int] | None = None,
               **_context) -> torch.Tensor:
        """The text pipeline's row probabilities [R, N] (after KS) and cosine scores [R, N] -> blended ones.
        text: the prompt rows [R, D]; unit: the features as scored [D, N]; options: the resolved
        `SegmentOptions` `segment` runs with; image and grid: for the pixel-level features."""
        fitted = self.learner.fit_rows(text, row_names, options)
        if fitted is None or fitted.trust == 0.0:
            return probs
        pixels = None
        if fitted.delta.shape[1] > unit.shape[0]:
            if image is None or grid is None:
                raise MaskCLIPError("the learner uses pixel-level features: it needs the image and its grid")
            pixels = patch_pixel_features(image, grid).flatten(1)
        return fitted.apply(probs, scores, unit, options, pixels)


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
    KEPT_FITS = 4  # fits kept per verified-pixel version: toggling KS/PD back and forth reuses them

    def __init__(self, scales: Sequence[int], window: int | None = None, stride: int | None = None, *,
                 dense_mode: str | None = None, window_norm: bool | None = None, pull: float = DEFAULT_PULL,
                 cross_validate: bool = True, pixel_features: bool | str = PIXEL_FEATURES):
        super().__init__(VerifiedSamples(), scales, window, stride, dense_mode=dense_mode, window_norm=window_norm)
        self.pull = check_pull(pull)
        self.cross_validate = cross_validate  # False: trust the learner fully (the benchmark's ablation)
        self.pixel_features = pixel_features  # the learner also sees maskclip.pixel_features
        self._fits: dict[str, tuple[int, Residual | None]] = {}
        self._fit_lock = threading.Lock()

    @property
    def samples(self) -> VerifiedSamples:
        return self.store

    @property
    def version(self) -> int:
        return self.samples.version

    def feature_maps(self, model, image: np.ndarray) -> list[dict]:
        """The image's dense features as `segment` scores them (unit vectors unless window-normalised), with
        its keys (key smoothing), per scale."""
        _mode, o = model.options(self.feature_kwargs().get("dense_mode"), window=self.window, stride=self.stride,
                                 window_norm=self.window_norm)
        maps = model.image_features(image, **self.feature_kwargs())
        out = []
        for m in maps:
            entry = {"features": m["features"] if o.window_norm else F.normalize(m["features"], dim=0),
                     "keys": m["keys"]}
            if self.pixel_features:
                entry["pixels"] = patch_pixel_features(image, tuple(m["features"].shape[1:]))
            out.append(entry)
        return out

    def taught(self) -> dict[str, float]:
        """Verified area (patches) per class name ("background": confirmed background) - what a GUI shows."""
        return {n.strip(): a for n, a in self.samples.taught().items()}

    known = taught  # the name ProjectPrototypes uses

    # --- fitting -------------------------------------------------------------------------------------
    def fit_rows(self, text: torch.Tensor, row_names: Sequence[str], options=None) -> Residual | None:
        """The residual for these prompt rows (each named by its output class) under `options` (resolved
        `SegmentOptions`; None: softmax at CLIP's temperature, no PD/KS), fitted now unless cached for the
        current verified pixels; None when nothing taught applies (the text pipeline as it is)."""
        options = options if options is not None else SegmentOptions(
            key_smoothing=False, prompt_denoising=False, temperature=TEMPERATURE).resolved("maskclip")
        key = f"{_digest(text, row_names)}|{_pipeline_key(options)}"
        cached = self._fits.get(key)
        if cached is not None and cached[0] == self.samples.version:
            return cached[1]
        with self._fit_lock:
            version, columns, images = self.samples.snapshot_images()
            cached = self._fits.get(key)
            if cached is not None and cached[0] == version:
                return cached[1]
            fitted = self._fit(text.detach().float().cpu(), row_names, columns, images, options) if images else None
            kept = {k: v for k, v in self._fits.items() if v[0] == version}  # fits of older pixels are useless
            self._fits = {**dict(list(kept.items())[-(self.KEPT_FITS - 1):]), key: (version, fitted)}
            return fitted

    def _fit(self, text, row_names, columns, images, options) -> Residual | None:
        """The targets mapped onto the output classes of these rows, the trust by cross-validation, then
        the residual on every verified patch."""
        names = list(dict.fromkeys(row_names))  # output classes in row order
        mapping = torch.zeros(len(columns), len(names))
        for j, column in enumerate(columns):
            name = BACKGROUND if column == " background" else column  # confirmed bg when a class is "background"
            if name in names:
                mapping[j, names.index(name)] = 1.0
        kept = []
        for maps in images:
            mine = []
            for m in maps:
                if m.x.shape[1] != text.shape[1]:
                    raise MaskCLIPError(f"the learner's verified features have {m.x.shape[1]} channels but the "
                                        f"text has {text.shape[1]}: they were read with another model")
                t = m.targets @ mapping
                mass = t.sum(1)
                keep = mass > 1e-6  # patches whose verified labels are all outside these prompts teach nothing
                if keep.any():
                    mine.append(VerifiedMap(m.x, m.index[keep], t[keep] / mass[keep, None],
                                            m.weights[keep] * mass[keep], m.keys, m.pixels))
            if mine:
                kept.append(mine)
        if not kept:
            return None
        row_class = [names.index(n) for n in row_names]
        with_pixels = kept[0][0].pixels is not None and bool(self.pixel_features)
        if with_pixels and self.pixel_features == "auto":  # with or without them, as cross-validation says
            plain = [[replace(m, pixels=None) for m in mine] for mine in kept]
            trust, gain = cross_validate(text, row_class, kept, options, self.pull)
            trust_plain, gain_plain = cross_validate(text, row_class, plain, options, self.pull)
            if gain_plain + PIXEL_MARGIN >= gain:
                kept, trust = plain, trust_plain
            trust = trust if self.cross_validate else 1.0
        else:
            if not with_pixels:
                kept = [[replace(m, pixels=None) for m in mine] for mine in kept]
            trust = choose_trust(text, row_class, kept, options, self.pull) if self.cross_validate else 1.0
        maps = [m for mine in kept for m in mine]
        if trust == 0.0:
            return Residual(torch.zeros(len(text), 0), torch.zeros(len(text)), 0.0)
        delta, bias = fit_residual(text, row_class, maps, self.pull, options.temperature)
        return Residual(delta, bias, trust)

    def fit(self, model, classes, background, options=None, **fields) -> None:
        """Fit now for the prompts `segment` will get (same classes, background, `options` / option fields),
        e.g. in a worker after a stroke, so that the next redraw only applies the residual."""
        _mode, o = model.options(self.dense_mode, options, **fields)
        text, class_names, groups, _bg = model.encode_prompts(classes, background, o.synonyms == "max")
        row_names = [""] * len(text)
        for c, rows in enumerate(groups):
            for r in rows:
                row_names[r] = class_names[c]
        self.fit_rows(text.to("cpu"), row_names, o)

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
