"""The MaskCLIP model object: dense features, class embeddings and full-resolution segmentation.

Data flow (docs/architecture.md, "Data flow"): image -> dense features per scale and dense mode (expensive, cached) ->
cosine scores against class embeddings -> PD, softmax, KS -> background / synonym merge -> PAMR ->
bilinear upsampling, scale average -> labels (-> background threshold). Changing classes or any
`SegmentOptions` field except the window ones only redoes the part after the cache.
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from . import __version__
from .atomic import atomic_torch_save
from .backbone import dense_encoder, dense_mode_key
from .cache import FeatureCache
from .defaults import (DEFAULT_BACKGROUND, DEFAULT_DENSE_MODE, DEFAULT_DEVICE, DEFAULT_MODEL,  # noqa: F401
                       DEFAULT_PRETRAINED, DEFAULT_SCALES)
from .errors import MaskCLIPError
from .geometry import scaled_size, upsample_accumulate, window_starts
from .images import to_rgb_float
from .options import SegmentOptions
from .pamr import pamr
from .precision import autocast, autocast_dtype, precision_name
from .prototypes import LearnedTerm  # or learner.TextPriorTerm (refine: after KS)
from .scoring import pipeline_probabilities
from .text import ClassSpec, TextEncoder, prompt_rows
from .weights import CHECKPOINT_QUICK_GELU_KEY, clip_mean_std, load_clip, resolve_device, uses_quick_gelu

FEATURE_FORMAT = 2  # bump when the cached tensors change meaning (2: batch-first last block, activation)
WINDOW_BATCH_CUDA = 16  # sliding windows per encoder pass on a GPU (224-px windows of a ViT-B/16: ~1 GB)


@dataclass
class DenseFeatures:
    features: torch.Tensor  # [B, D, h, w] in CLIP's joint space, not normalised
    keys: torch.Tensor  # [B, C, h, w] last-block keys, for key smoothing


@dataclass
class Segmentation:
    probs: np.ndarray  # float32 [K, H, W] confidence per output class
    labels: np.ndarray  # int32 [H, W] in 0..K-1
    class_names: list[str]  # one per output class
    background_index: int | None  # the class that absorbed the background prompts, if any


def image_digest(image: np.ndarray) -> str:
    """Content key of an image array (pixels, shape and dtype)."""
    array = np.ascontiguousarray(image)
    digest = hashlib.blake2b(array.data, digest_size=16)
    digest.update(f"{array.shape}{array.dtype}".encode())
    return digest.hexdigest()


class MaskCLIP:
    """MaskCLIP on top of an open_clip model. Thread-safe enough for one worker plus the GUI thread.

    `dense_mode` is the default last-block variant; `segment` and friends take another per call. Each mode
    has its own feature cache (its signature names the mode and its parameters), so switching back and
    forth re-encodes nothing twice.
    """

    def __init__(self, clip_model: torch.nn.Module, tokenizer, *, model_name: str, weights_id: str,
                 device: str | torch.device = "auto", dense_mode: str = "maskclip",
                 cache_dir: str | Path | None = None, cache_bytes: int = 512 << 20, precision: str = "auto",
                 window_batch: int | None = None):
        self.device = resolve_device(device)
        self.clip = clip_model.to(self.device).eval()
        # the encoder's forward pass: bfloat16/float16 autocast on CUDA, float32 on the CPU (maskclip.precision)
        self.autocast_dtype = autocast_dtype(self.device, precision)
        # sliding windows encoded per forward pass: a batch fills a GPU; one at a time on the CPU, which gains
        # nothing from batching and so keeps its results those of one window per pass
        self.window_batch = int(window_batch or (WINDOW_BATCH_CUDA if self.device.type == "cuda" else 1))
        if self.window_batch < 1:
            raise MaskCLIPError(f"window_batch must be at least 1, got {window_batch}")
        self.model_name = model_name
        self.weights_id = weights_id
        self.quick_gelu = uses_quick_gelu(self.clip)
        self.dense_mode = dense_mode
        self._cache_dir, self._cache_bytes = cache_dir, cache_bytes
        self._encoders: dict[str, object] = {}
        self._caches: dict[str, FeatureCache] = {}
        self._lock = threading.Lock()
        self.stride = self._encoder(dense_mode).stride  # output stride in pixels: patch size, or 32 for ResNets
        mean, std = clip_mean_std(self.clip)
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        # text embeddings persist beside the features, except for random weights (never seen again)
        text_signature = None if weights_id.startswith("random:") else {
            "model": model_name, "weights": weights_id, "activation": "quick_gelu" if self.quick_gelu else "gelu",
            "maskclip": __version__}
        self.text = TextEncoder(self.clip, tokenizer, self.device, cache_dir=cache_dir, signature=text_signature)
        self.stats = {"image_encoder_runs": 0}

    def _encoder(self, mode: str):
        """The dense extractor of a mode (built once; unknown modes and ResNet + non-maskclip are errors)."""
        with self._lock:
            if mode not in self._encoders:
                self._encoders[mode] = dense_encoder(self.clip, mode)
            return self._encoders[mode]

    def feature_cache(self, dense_mode: str | None = None) -> FeatureCache:
        mode = dense_mode or self.dense_mode
        self._encoder(mode)
        with self._lock:
            if mode not in self._caches:
                self._caches[mode] = FeatureCache(self.signature_for(mode), max_bytes=self._cache_bytes,
                                                  disk_dir=self._cache_dir)
            return self._caches[mode]

    @property
    def cache(self) -> FeatureCache:
        return self.feature_cache()

    def signature_for(self, dense_mode: str) -> dict:
        """What cached features depend on, besides the image, the scales and the windows."""
        signature = {"model": self.model_name, "weights": self.weights_id,
                     "activation": "quick_gelu" if self.quick_gelu else "gelu",
                     "dense_mode": dense_mode_key(dense_mode), "format": FEATURE_FORMAT, "maskclip": __version__}
        if self.autocast_dtype is not None:  # features made under autocast are not float32 ones (the CPU's)
            signature["precision"] = precision_name(self.autocast_dtype)
        return signature

    @property
    def signature(self) -> dict:
        return self.signature_for(self.dense_mode)

    def options(self, dense_mode: str | None = None, options: SegmentOptions | None = None,
                **fields) -> tuple[str, SegmentOptions]:
        """(mode, options with the mode's defaults filled in): what `segment` will use for these arguments."""
        mode = dense_mode or self.dense_mode
        options = options or SegmentOptions()
        if fields:
            options = options.updated(**fields)
        return mode, options.resolved(mode)

    # --- the expensive part ------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_dense(self, x: torch.Tensor, dense_mode: str | None = None) -> DenseFeatures:
        """Dense features of a normalised batch [B, 3, H, W]; sides are zero-padded to the output stride."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise MaskCLIPError(f"encode_dense expects a [B, 3, H, W] tensor, got {tuple(x.shape)}")
        encoder = self._encoder(dense_mode or self.dense_mode)
        self.stats["image_encoder_runs"] += 1
        with autocast(self.device, self.autocast_dtype):
            features, keys = encoder(x.to(self.device, torch.float32))
        return DenseFeatures(features.float(), keys.float())

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        """CLIP's mean/std normalisation of [B, 3, H, W] RGB in [0, 1]."""
        return (rgb - self._mean) / self._std

    def _encode_windows(self, x: torch.Tensor, window: int, stride: int, mode: str,
                        window_norm: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense maps of one normalised image [1, 3, H, W]; overlapping windows are averaged on the patch grid.

        The windows go through the encoder `window_batch` at a time (all have the same size). With
        `window_norm` each window's features are L2-normalised first: cosine scores are linear in them, so this
        equals averaging per-window logits (the successors' sliding-window inference).
        """
        def encode(crops):
            dense = self.encode_dense(crops, mode)
            features = F.normalize(dense.features, dim=1) if window_norm else dense.features
            return features, dense.keys

        _, _, height, width = x.shape
        if height <= window and width <= window:
            features, keys = encode(x)
            return features[0], keys[0]
        s = self.stride
        window = max(s, window // s * s)
        stride = max(s, stride // s * s)
        wh, ww = min(window, height), min(window, width)
        corners = [(top, left) for top in window_starts(height, wh, stride)
                   for left in window_starts(width, ww, stride)]
        features = keys = None
        count = torch.zeros(height // s, width // s, device=self.device)
        for first in range(0, len(corners), self.window_batch):
            batch = corners[first:first + self.window_batch]
            crop_features, crop_keys = encode(torch.cat([x[:, :, t:t + wh, l:l + ww] for t, l in batch]))
            if features is None:
                features = torch.zeros(crop_features.shape[1], height // s, width // s, device=self.device)
                keys = torch.zeros(crop_keys.shape[1], height // s, width // s, device=self.device)
            for (top, left), crop_f, crop_k in zip(batch, crop_features, crop_keys):
                rows, cols = slice(top // s, (top + wh) // s), slice(left // s, (left + ww) // s)
                features[:, rows, cols] += crop_f
                keys[:, rows, cols] += crop_k
                count[rows, cols] += 1
        return features / count, keys / count

    @torch.inference_mode()
    def image_features(self, image: np.ndarray, scales: Sequence[int] = DEFAULT_SCALES,
                       window: int | None = None, stride: int | None = None, *, dense_mode: str | None = None,
                       window_norm: bool | None = None) -> list[dict[str, torch.Tensor]]:
        """Per scale, {'features': [D, h, w], 'keys': [C, h, w]} on the CPU; cached per image content.
        None = the mode's default (`options.MODE_DEFAULTS`)."""
        mode, o = self.options(dense_mode, window=window, stride=stride, window_norm=window_norm)
        scales = _checked_scales(scales)
        key = self._feature_key(image, scales, o)
        cache = self.feature_cache(mode)
        entry = cache.get(key)
        if entry is None:
            entry = self._compute_features(image, scales, o, mode)
            cache.put(key, entry)
        return [{"features": entry[f"features{i}"], "keys": entry[f"keys{i}"]} for i in range(len(scales))]

    @staticmethod
    def _feature_key(image: np.ndarray, scales: Sequence[int], o: SegmentOptions) -> str:
        return (f"{image_digest(image)}|scales={tuple(int(s) for s in scales)}|window={o.window}|stride={o.stride}"
                f"|window_norm={o.window_norm}")

    def has_features(self, image: np.ndarray, scales: Sequence[int] = DEFAULT_SCALES, window: int | None = None,
                     stride: int | None = None, *, dense_mode: str | None = None,
                     window_norm: bool | None = None) -> bool:
        """Whether `image_features` with these arguments is served from memory (no encoder run, no disk read)."""
        mode, o = self.options(dense_mode, window=window, stride=stride, window_norm=window_norm)
        return self.feature_cache(mode).in_memory(self._feature_key(image, _checked_scales(scales), o))

    def is_ready(self, image: np.ndarray, classes: Sequence[ClassSpec], *,
                 background: Sequence[str] = DEFAULT_BACKGROUND, scales: Sequence[int] = DEFAULT_SCALES,
                 dense_mode: str | None = None, options: SegmentOptions | None = None, **fields) -> bool:
        """True when `segment` with these arguments would run neither encoder (features in memory, every
        name embedded): a GUI may then call it on its event loop. Invalid arguments are not ready (`segment`
        reports them)."""
        try:
            mode, o = self.options(dense_mode, options, **fields)
            rows = prompt_rows(classes, background, o.synonyms == "max")[0]
            key = self._feature_key(image, _checked_scales(scales), o)
            cache = self.feature_cache(mode)
        except MaskCLIPError:
            return False
        return self.text.has_names([n for names in rows for n in names]) and cache.in_memory(key)

    def _scaled_rgb(self, image: np.ndarray, short_side: int) -> torch.Tensor:
        """The image as [1, 3, h, w] RGB in [0, 1] at the size encoded for `short_side`."""
        rgb = torch.from_numpy(to_rgb_float(image)).permute(2, 0, 1)[None].to(self.device)
        height, width = rgb.shape[-2:]
        size = scaled_size(height, width, short_side, self.stride)
        return F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=size[0] < height)

    def _compute_features(self, image: np.ndarray, scales: tuple[int, ...], o: SegmentOptions,
                          mode: str) -> dict[str, torch.Tensor]:
        entry = {}
        for i, short_side in enumerate(scales):
            x = self.normalize(self._scaled_rgb(image, short_side))
            entry[f"features{i}"], entry[f"keys{i}"] = self._encode_windows(x, o.window, o.stride, mode,
                                                                            o.window_norm)
        return entry

    # --- the cheap part ----------------------------------------------------------------------------
    def encode_text(self, classes: Sequence[ClassSpec]) -> torch.Tensor:
        """[K, D] L2-normalised class embeddings (85-template ensemble, synonyms averaged, cached per name)."""
        return self.text.class_embeddings(classes)

    def encode_prompts(self, classes: Sequence[ClassSpec], background: Sequence[str] = DEFAULT_BACKGROUND,
                       split_synonyms: bool = False):
        """The text side of `segment`: (text rows [R, D], output class names, output class -> its rows,
        index of the background class or None); see `text.prompt_rows`."""
        rows, row_class, class_names, bg_index = prompt_rows(classes, background, split_synonyms)
        groups = [[r for r, k in enumerate(row_class) if k == c] for c in range(len(class_names))]
        return self.encode_text(rows), class_names, groups, bg_index

    @torch.inference_mode()
    def segment(self, image: np.ndarray, classes: Sequence[ClassSpec], *,
                background: Sequence[str] = DEFAULT_BACKGROUND, scales: Sequence[int] = DEFAULT_SCALES,
                dense_mode: str | None = None, options: SegmentOptions | None = None,
                learned: LearnedTerm | None = None, **fields) -> Segmentation:
        """Full-resolution class confidences and labels for one image.

        `options` (or its fields as keyword arguments, e.g. key_smoothing=False) say how scores become
        probabilities; what they leave at None follows the dense mode's defaults.
        learned: a visual term from verified pixels (`maskclip.prototypes`) blended into the class scores.
        """
        mode, o = self.options(dense_mode, options, **fields)
        text, class_names, groups, bg_index = self.encode_prompts(classes, background, o.synonyms == "max")
        text = text.to(self.device)
        row_names = [""] * len(text)  # the output class of each text row (what learned prototypes are named by)
        for c, rows in enumerate(groups):
            for r in rows:
                row_names[r] = class_names[c]
        scales = _checked_scales(scales)
        maps = self.image_features(image, scales, o.window, o.stride, dense_mode=mode, window_norm=o.window_norm)
        height, width = image.shape[:2]
        acc = torch.zeros(len(class_names), height, width)
        for short_side, scale_maps in zip(scales, maps):
            merged = self._class_maps(text, groups, scale_maps, o, learned, row_names, image)
            if o.pamr:
                rgb = self._scaled_rgb(image, short_side)[0]
                merged = F.interpolate(merged[None], size=rgb.shape[-2:], mode="bilinear", align_corners=False)[0]
                merged = pamr(rgb, merged, o.pamr_steps, o.pamr_dilations)
            upsample_accumulate(acc, merged, weight=1.0 / len(maps))
        # torch's max over the leading axis is ~2x faster than numpy's argmax and ~15x faster than torch's
        # argmax on the CPU; like argmax it returns the first index among equal maxima
        best, labels = acc.max(dim=0)
        if o.bg_threshold is not None:
            acc, class_names, bg_index, labels = _threshold_background(acc, class_names, bg_index, best, labels,
                                                                       o.bg_threshold)
        return Segmentation(acc.numpy(), labels.to(torch.int32).numpy(), class_names, bg_index)

    def _class_maps(self, text: torch.Tensor, groups: list[list[int]], scale_maps: dict, o: SegmentOptions,
                    learned: LearnedTerm | None = None, row_names: Sequence[str] = (),
                    image: np.ndarray | None = None) -> torch.Tensor:
        """One scale's output-class maps on the patch grid [K, h, w]: cosine scores -> PD -> softmax -> KS ->
        (softmax-1 fusion form) -> max over each class's rows. A learned term either blends into the cosine
        scores (`blend`, the prototypes) or corrects the probabilities KS outputs (`refine`, the text-prior
        learner, fitted on those very probabilities)."""
        raw = scale_maps["features"].to(self.device)
        grid = raw.shape[1:]
        # window-normalised features are averages of unit vectors: scoring them as they are averages the
        # windows' cosines (the successors' logit averaging); renormalising would not
        features = raw.flatten(1) if o.window_norm else F.normalize(raw.flatten(1), dim=0)
        scores = text @ features
        refine = getattr(learned, "refine", None)
        if learned is not None and refine is None:
            scores = learned.blend(scores, raw.flatten(1), row_names, text=text, unit=features,
                                   temperature=o.temperature)
        keys = scale_maps["keys"].to(self.device).flatten(1) if o.key_smoothing else None
        probs = pipeline_probabilities(scores, keys, o)
        if refine is not None:
            probs = refine(probs, scores, row_names, text=text, unit=features, options=o, image=image,
                           grid=tuple(grid))
        if o.scale_fusion == "softmax1":  # mmseg's aug_test: softmax of the head's output at temperature 1
            probs = torch.softmax(probs if o.key_smoothing or refine is not None else scores, dim=0)
        return torch.stack([probs[rows].amax(dim=0) for rows in groups]).view(len(groups), *grid)

    def save_checkpoint(self, path: str | Path) -> None:
        """Write the open_clip state dict and its activation (loadable with `load(model_name, pretrained=path)`
        and by open_clip, which reads "state_dict")."""
        atomic_torch_save({"state_dict": self.clip.state_dict(), CHECKPOINT_QUICK_GELU_KEY: self.quick_gelu}, path)


def _checked_scales(scales: Sequence[int]) -> tuple[int, ...]:
    scales = tuple(int(s) for s in scales)
    if not scales or min(scales) < 1:
        raise MaskCLIPError(f"scales must be positive short-side lengths in pixels, got {scales}")
    return scales


def _threshold_background(probs, class_names, bg_index, best, labels, threshold):
    """Pixels whose best class probability is below `threshold` become background (appended when no class
    absorbs the background prompts; its confidence is 1 - best where it wins by the threshold, else 0)."""
    unsure = best < threshold
    if bg_index is None:
        bg_index = len(class_names)
        class_names = [*class_names, "background"]
        probs = torch.cat([probs, torch.where(unsure, 1.0 - best, 0.0)[None]])
    return probs, class_names, bg_index, torch.where(unsure, bg_index, labels)


def load(model_name: str = DEFAULT_MODEL, pretrained: str | os.PathLike | None = DEFAULT_PRETRAINED,
         device: str | torch.device = DEFAULT_DEVICE, *, dense_mode: str = DEFAULT_DENSE_MODE,
         quick_gelu: bool | None = None, cache_dir: str | Path | None = None, cache_bytes: int = 512 << 20,
         precision: str = "auto", window_batch: int | None = None) -> MaskCLIP:
    """Load an open_clip model for MaskCLIP.

    pretrained: an open_clip tag (downloaded on first use, then cached by open_clip), a local checkpoint
    file (OpenAI .pt or open_clip state dict), or None for random weights (tests and benchmarks).
    dense_mode: maskclip, sclip, clearclip or naclip (the default of `segment`; ViTs only for the last three).
    quick_gelu: None decides from the weights (OpenAI's: QuickGELU), True / False force the activation.
    precision: "auto" autocasts the image encoder to bfloat16 (float16 without it) on CUDA and keeps float32 on
    the CPU; "float32" everywhere turns autocast off (`maskclip.precision`).
    window_batch: sliding windows per encoder pass (default 16 on CUDA, 1 on the CPU).
    """
    clip_model, weights_id = load_clip(model_name, None if pretrained is None else os.fspath(pretrained),
                                       quick_gelu)
    return MaskCLIP(clip_model, open_clip.get_tokenizer(model_name), model_name=model_name,
                    weights_id=weights_id, device=device, dense_mode=dense_mode, cache_dir=cache_dir,
                    cache_bytes=cache_bytes, precision=precision, window_batch=window_batch)
