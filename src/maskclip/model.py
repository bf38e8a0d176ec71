"""The MaskCLIP model object: dense features, class embeddings and full-resolution segmentation.

Data flow (DESIGN.md section 2): image -> dense features per scale (expensive, cached) -> cosine scores
against class embeddings -> PD, softmax, KS -> background merge -> bilinear upsampling, scale average ->
labels. Changing classes, toggles or thresholds only redoes the part after the cache.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from . import __version__
from .atomic import atomic_write
from .backbone import clip_mean_std, dense_encoder, load_clip, resolve_device
from .cache import FeatureCache
from .errors import MaskCLIPError
from .geometry import scaled_size, upsample_accumulate, window_starts
from .images import to_rgb_float
from .prototypes import LearnedTerm
from .refine import key_smooth, probabilities, prompt_denoise
from .text import ClassSpec, TextEncoder, prompt_rows

DEFAULT_BACKGROUND = ("building", "ground", "grass", "tree", "sky")  # the official demo's background prompts
DEFAULT_SCALES = (336,)  # short side in pixels; the paper's ensemble is (224, 336, 520)
DEFAULT_WINDOW = 768  # scaled images larger than this (either side) are encoded in overlapping windows
DEFAULT_STRIDE = 512
FEATURE_FORMAT = 1  # bump when the cached tensors change meaning


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
    """MaskCLIP on top of an open_clip model. Thread-safe enough for one worker plus the GUI thread."""

    def __init__(self, clip_model: torch.nn.Module, tokenizer, *, model_name: str, weights_id: str,
                 device: str | torch.device = "auto", dense_mode: str = "maskclip",
                 cache_dir: str | Path | None = None, cache_bytes: int = 512 << 20):
        self.device = resolve_device(device)
        self.clip = clip_model.to(self.device).eval()
        self.model_name = model_name
        self.weights_id = weights_id
        self.dense_mode = dense_mode
        self._dense = dense_encoder(self.clip, dense_mode)
        self.stride = self._dense.stride  # output stride in pixels: the patch size, or 32 for ResNets
        mean, std = clip_mean_std(self.clip)
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.text = TextEncoder(self.clip, tokenizer, self.device)
        self.cache = FeatureCache(self.signature, max_bytes=cache_bytes, disk_dir=cache_dir)
        self.stats = {"image_encoder_runs": 0}

    @property
    def signature(self) -> dict:
        """What the cached features depend on, besides the image and the scales."""
        return {"model": self.model_name, "weights": self.weights_id, "dense_mode": self.dense_mode,
                "format": FEATURE_FORMAT, "maskclip": __version__}

    # --- the expensive part ------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_dense(self, x: torch.Tensor) -> DenseFeatures:
        """Dense features of a normalised batch [B, 3, H, W]; sides are zero-padded to the output stride."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise MaskCLIPError(f"encode_dense expects a [B, 3, H, W] tensor, got {tuple(x.shape)}")
        self.stats["image_encoder_runs"] += 1
        features, keys = self._dense(x.to(self.device, torch.float32))
        return DenseFeatures(features.float(), keys.float())

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        """CLIP's mean/std normalisation of [B, 3, H, W] RGB in [0, 1]."""
        return (rgb - self._mean) / self._std

    def _encode_windows(self, x: torch.Tensor, window: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense maps of one normalised image [1, 3, H, W]; overlapping windows are averaged on the patch grid."""
        _, _, height, width = x.shape
        if height <= window and width <= window:
            dense = self.encode_dense(x)
            return dense.features[0], dense.keys[0]
        s = self.stride
        window = max(s, window // s * s)
        stride = max(s, stride // s * s)
        wh, ww = min(window, height), min(window, width)
        features = keys = None
        count = torch.zeros(height // s, width // s, device=self.device)
        for top in window_starts(height, wh, stride):
            for left in window_starts(width, ww, stride):
                dense = self.encode_dense(x[:, :, top:top + wh, left:left + ww])
                if features is None:
                    features = torch.zeros(dense.features.shape[1], height // s, width // s, device=self.device)
                    keys = torch.zeros(dense.keys.shape[1], height // s, width // s, device=self.device)
                rows, cols = slice(top // s, (top + wh) // s), slice(left // s, (left + ww) // s)
                features[:, rows, cols] += dense.features[0]
                keys[:, rows, cols] += dense.keys[0]
                count[rows, cols] += 1
        return features / count, keys / count

    @torch.inference_mode()
    def image_features(self, image: np.ndarray, scales: Sequence[int] = DEFAULT_SCALES,
                       window: int = DEFAULT_WINDOW, stride: int = DEFAULT_STRIDE) -> list[dict[str, torch.Tensor]]:
        """Per scale, {'features': [D, h, w], 'keys': [C, h, w]} on the CPU; cached per image content."""
        scales = tuple(int(s) for s in scales)
        if not scales or min(scales) < 1:
            raise MaskCLIPError(f"scales must be positive short-side lengths in pixels, got {scales}")
        key = self._feature_key(image, scales, window, stride)
        entry = self.cache.get(key)
        if entry is None:
            entry = self._compute_features(image, scales, window, stride)
            self.cache.put(key, entry)
        return [{"features": entry[f"features{i}"], "keys": entry[f"keys{i}"]} for i in range(len(scales))]

    @staticmethod
    def _feature_key(image: np.ndarray, scales: Sequence[int], window: int, stride: int) -> str:
        return f"{image_digest(image)}|scales={tuple(int(s) for s in scales)}|window={window}|stride={stride}"

    def has_features(self, image: np.ndarray, scales: Sequence[int] = DEFAULT_SCALES, window: int = DEFAULT_WINDOW,
                     stride: int = DEFAULT_STRIDE) -> bool:
        """Whether `image_features` with these arguments is served from memory (no encoder run, no disk read)."""
        return self.cache.in_memory(self._feature_key(image, scales, window, stride))

    def is_ready(self, image: np.ndarray, classes: Sequence[ClassSpec], *,
                 background: Sequence[str] = DEFAULT_BACKGROUND, scales: Sequence[int] = DEFAULT_SCALES,
                 window: int = DEFAULT_WINDOW, stride: int = DEFAULT_STRIDE) -> bool:
        """True when `segment` with these arguments would run neither encoder (features in memory, every
        name embedded): a GUI may then call it on its event loop. Invalid classes are not ready (`segment`
        reports them)."""
        try:
            rows = prompt_rows(classes, background)[0]
        except MaskCLIPError:
            return False
        return (self.text.has_names([n for names in rows for n in names])
                and self.cache.in_memory(self._feature_key(image, scales, window, stride)))

    def _compute_features(self, image: np.ndarray, scales: tuple[int, ...], window: int,
                          stride: int) -> dict[str, torch.Tensor]:
        rgb = torch.from_numpy(to_rgb_float(image)).permute(2, 0, 1)[None].to(self.device)
        height, width = rgb.shape[-2:]
        entry = {}
        for i, short_side in enumerate(scales):
            size = scaled_size(height, width, short_side, self.stride)
            resized = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False,
                                    antialias=size[0] < height)
            features, keys = self._encode_windows(self.normalize(resized), window, stride)
            entry[f"features{i}"], entry[f"keys{i}"] = features, keys
        return entry

    # --- the cheap part ----------------------------------------------------------------------------
    def encode_text(self, classes: Sequence[ClassSpec]) -> torch.Tensor:
        """[K, D] L2-normalised class embeddings (85-template ensemble, synonyms averaged, cached per name)."""
        return self.text.class_embeddings(classes)

    def encode_prompts(self, classes: Sequence[ClassSpec], background: Sequence[str] = DEFAULT_BACKGROUND):
        """The text side of `segment`: (text rows [R, D], output class names, output class -> its rows,
        index of the background class or None); see `text.prompt_rows`."""
        rows, row_class, class_names, bg_index = prompt_rows(classes, background)
        groups = [[r for r, k in enumerate(row_class) if k == c] for c in range(len(class_names))]
        return self.encode_text(rows), class_names, groups, bg_index

    @torch.inference_mode()
    def segment(self, image: np.ndarray, classes: Sequence[ClassSpec], *,
                background: Sequence[str] = DEFAULT_BACKGROUND, key_smoothing: bool = True,
                prompt_denoising: bool = True, pd_threshold: float = 0.5,
                scales: Sequence[int] = DEFAULT_SCALES, window: int = DEFAULT_WINDOW,
                stride: int = DEFAULT_STRIDE, learned: LearnedTerm | None = None) -> Segmentation:
        """Full-resolution class confidences and labels for one image.

        learned: a visual term from verified pixels (`maskclip.prototypes`) blended into the probabilities.
        """
        if not 0.0 <= pd_threshold <= 1.0:
            raise MaskCLIPError(f"the prompt denoising threshold must lie in [0, 1], got {pd_threshold}")
        text, class_names, groups, bg_index = self.encode_prompts(classes, background)
        text = text.to(self.device)
        row_names = [""] * len(text)  # the output class of each text row (what learned prototypes are named by)
        for c, rows in enumerate(groups):
            for r in rows:
                row_names[r] = class_names[c]

        maps = self.image_features(image, scales, window, stride)
        height, width = image.shape[:2]
        acc = torch.zeros(len(class_names), height, width)
        for scale_maps in maps:
            features = scale_maps["features"].to(self.device)
            grid = features.shape[1:]
            scores = text @ F.normalize(features.flatten(1), dim=0)
            if learned is not None:
                scores = learned.blend(scores, features.flatten(1), row_names)
            if prompt_denoising:
                scores, _ = prompt_denoise(scores, pd_threshold)
            probs = probabilities(scores)
            if key_smoothing:
                probs = key_smooth(probs, scale_maps["keys"].to(self.device).flatten(1))
            merged = torch.stack([probs[rows].amax(dim=0) for rows in groups]).view(len(groups), *grid)
            upsample_accumulate(acc, merged, weight=1.0 / len(maps))
        # torch's max over the leading axis is ~2x faster than numpy's argmax and ~15x faster than torch's
        # argmax on the CPU; like argmax it returns the first index among equal maxima
        labels = acc.max(dim=0).indices.to(torch.int32)
        return Segmentation(acc.numpy(), labels.numpy(), class_names, bg_index)

    def save_checkpoint(self, path: str | Path) -> None:
        """Write the open_clip state dict (loadable with `load(model_name, pretrained=path)`)."""
        with atomic_write(path, "wb") as f:
            torch.save(self.clip.state_dict(), f)


def load(model_name: str = "ViT-B-16", pretrained: str | os.PathLike | None = "openai",
         device: str | torch.device = "auto", *, dense_mode: str = "maskclip",
         cache_dir: str | Path | None = None, cache_bytes: int = 512 << 20) -> MaskCLIP:
    """Load an open_clip model for MaskCLIP.

    pretrained: an open_clip tag (downloaded on first use, then cached by open_clip), a local checkpoint
    file (OpenAI .pt or open_clip state dict), or None for random weights (tests and benchmarks).
    """
    clip_model, weights_id = load_clip(model_name, None if pretrained is None else os.fspath(pretrained))
    return MaskCLIP(clip_model, open_clip.get_tokenizer(model_name), model_name=model_name,
                    weights_id=weights_id, device=device, dense_mode=dense_mode, cache_dir=cache_dir,
                    cache_bytes=cache_bytes)
