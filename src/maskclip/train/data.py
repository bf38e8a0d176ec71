"""Training items, augmentation and a deterministic, resumable (and shardable) batch plan.

A training item is (image, annotation labels, verified mask) plus the teacher's pseudo labels, which live
in the run folder's teacher cache (`targets.TeacherCache`). The dataset merges them into one target: the
annotation where a pixel is verified, the pseudo label elsewhere.

Every random choice (which images form batch i, the scale/crop/flip/colour of each sample) is derived
from (seed, iteration, position) rather than from a global RNG stream, so a resumed run draws exactly the
batches an uninterrupted run would have drawn, on any number of worker processes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, DistributedSampler
from torchvision.transforms.v2 import functional as TF

from .student import IMAGENET_MEAN, IMAGENET_STD
from .targets import IGNORE, TeacherCache, guided_target

ImageLoader = Callable[[], np.ndarray]
AnnotationLoader = Callable[[], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class TrainItem:
    """One image. `load_image` returns HxW[xC] (any dtype `to_rgb_float` accepts). `load_annotation`
    returns (labels uint8 HxW, verified bool HxW) or is None when nothing is verified. `fingerprint`
    changes when the image content changes, which invalidates its cached pseudo labels.
    Loaders must be picklable (module-level functions / functools.partial) for DataLoader workers."""

    key: str
    load_image: ImageLoader
    load_annotation: AnnotationLoader | None = None
    fingerprint: str = ""
    shape: tuple[int, int] | None = None  # (height, width) when known: cached pseudo labels must have it


@dataclass
class AugmentConfig:
    """Standard semantic-segmentation augmentation (mmseg's defaults, scaled by `base_size`)."""

    base_size: int | None = 512          # short side before random scaling (None: native size)
    crop_size: int = 512
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    photometric: bool = True
    brightness: float = 0.25             # factors drawn from [1-x, 1+x]
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.05                    # shift drawn from [-x, x]


def to_float_rgb(image: np.ndarray) -> np.ndarray:
    """HxW / HxWx3 / HxWx4, any numeric dtype -> float32 HxWx3 in [0,1] (the IO helper does the work)."""
    from ..images import to_rgb_float

    return to_rgb_float(image)


def normalise(img: torch.Tensor) -> torch.Tensor:
    """[..,3,H,W] in [0,1] -> ImageNet-normalised (the student's backbone statistics)."""
    mean = img.new_tensor(IMAGENET_MEAN)[:, None, None]
    std = img.new_tensor(IMAGENET_STD)[:, None, None]
    return (img - mean) / std


def resize_short_side(img: torch.Tensor, short: int) -> torch.Tensor:
    """[C,H,W] float -> bilinear resize so that min(H,W) == short (antialiased when shrinking)."""
    h, w = img.shape[-2:]
    s = short / min(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    return F.interpolate(img[None], size=size, mode="bilinear", align_corners=False, antialias=s < 1)[0]


def augment(image: np.ndarray, target: np.ndarray, verified: np.ndarray, cfg: AugmentConfig,
            rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random scale, crop (padding with ignore), horizontal flip and colour jitter.

    image float32 HxWx3 [0,1]; target uint8 HxW; verified bool HxW. Returns the normalised image
    [3,C,C], the target int64 [C,C] (255 = ignore) and the fixed-target mask bool [C,C]: the verified
    pixels and the padding, whose targets (annotation; ignore) hold in both phases, so self-training never
    labels pixels outside the image (the official code pads labels with 255, which it never self-labels).
    """
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    lab = torch.from_numpy(np.stack([target, verified.astype(np.uint8)]))  # [2,H,W] uint8
    h, w = img.shape[-2:]
    scale = (cfg.base_size / min(h, w)) if cfg.base_size else 1.0
    scale *= float(rng.uniform(*cfg.scale_range))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    # choose the crop window in scaled coordinates, then resize only the source pixels it covers
    # (cost independent of the random scale and of the image size)
    c = cfg.crop_size
    top = int(rng.integers(0, max(size[0], c) - c + 1))
    left = int(rng.integers(0, max(size[1], c) - c + 1))
    ch, cw = min(c, size[0] - top), min(c, size[1] - left)
    y0, x0 = min(h - 1, round(top * h / size[0])), min(w - 1, round(left * w / size[1]))
    y1 = max(y0 + 1, round((top + ch) * h / size[0]))
    x1 = max(x0 + 1, round((left + cw) * w / size[1]))
    img = F.interpolate(img[None, :, y0:y1, x0:x1], size=(ch, cw), mode="bilinear", align_corners=False,
                        antialias=scale < 1)[0]
    lab = F.interpolate(lab[None, :, y0:y1, x0:x1].float(), size=(ch, cw), mode="nearest")[0].to(torch.uint8)
    if cfg.hflip and rng.random() < 0.5:
        img, lab = img.flip(-1), lab.flip(-1)
    if cfg.photometric:
        img = TF.adjust_brightness(img, float(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)))
        img = TF.adjust_contrast(img, float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)))
        img = TF.adjust_saturation(img, float(rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)))
        if cfg.hue > 0:
            img = TF.adjust_hue(img, float(rng.uniform(-cfg.hue, cfg.hue)))
    img = normalise(img)
    pad_h, pad_w = c - img.shape[1], c - img.shape[2]
    if pad_h or pad_w:  # image smaller than the crop: pad with the mean colour / ignore / fixed (see above)
        img = F.pad(img, (0, pad_w, 0, pad_h), value=0.0)
        lab = torch.cat([F.pad(lab[:1], (0, pad_w, 0, pad_h), value=IGNORE),
                         F.pad(lab[1:], (0, pad_w, 0, pad_h), value=1)])
    return img.contiguous(), lab[0].long(), lab[1].bool()


class TrainDataset(Dataset):
    """Indexable by (item index, sample seed); yields augmented (image, target, verified)."""

    def __init__(self, items: Sequence[TrainItem], teacher: TeacherCache, augment_cfg: AugmentConfig,
                 confidence_threshold: float | np.ndarray | None = None):
        self.items = list(items)
        self.teacher = teacher
        self.cfg = augment_cfg
        self.confidence_threshold = confidence_threshold

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Full-resolution (image, merged target, verified) for one item."""
        item = self.items[index]
        image = to_float_rgb(item.load_image())
        h, w = image.shape[:2]
        pseudo, confidence = self.teacher.get(item.key, item.fingerprint, shape=(h, w))
        if item.load_annotation is not None:
            labels, verified = item.load_annotation()
        else:
            labels, verified = np.full((h, w), IGNORE, np.uint8), np.zeros((h, w), bool)
        for name, arr in (("pseudo labels", pseudo), ("labels", labels), ("verified mask", verified)):
            if arr.shape != (h, w):
                raise ValueError(f"{item.key}: {name} have shape {arr.shape}, image is {(h, w)}")
        target = guided_target(pseudo, confidence, labels, verified, self.confidence_threshold)
        return image, target, verified.astype(bool)

    def __getitem__(self, spec: tuple[int, int]):
        index, seed = spec
        image, target, verified = self.load(index)
        return augment(image, target, verified, self.cfg, np.random.default_rng(seed))


@dataclass
class BatchPlan:
    """Which samples form batch i on this rank, for any i, without replaying earlier batches.

    The sample stream is the concatenation of epochs; epoch e is `DistributedSampler(seed, epoch=e)`'s
    shard for this rank (plain shuffling when world_size is 1). Batch i takes positions
    [i*B, (i+1)*B) of that stream, so small datasets simply wrap into the next epoch.
    """

    dataset_size: int
    batch_size: int                     # per rank
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.dataset_size < 1:
            raise ValueError("no training images")
        self._sampler = DistributedSampler(range(self.dataset_size), num_replicas=self.world_size,
                                           rank=self.rank, shuffle=True, seed=self.seed, drop_last=False)
        self.per_epoch = len(self._sampler)

    def _epoch(self, epoch: int) -> list[int]:
        if epoch not in self._cache:
            self._sampler.set_epoch(epoch)
            self._cache = {epoch: list(self._sampler)}  # only the current epoch is kept
        return self._cache[epoch]

    def batch(self, iteration: int) -> list[tuple[int, int]]:
        """[(item index, augmentation seed)] for this rank's share of batch `iteration`."""
        out = []
        for j in range(self.batch_size):
            pos = iteration * self.batch_size + j
            epoch, offset = divmod(pos, self.per_epoch)
            index = self._epoch(epoch)[offset]
            # distinct per (seed, iteration, rank, slot); independent of how the run was split in time
            seed = int(np.random.SeedSequence([self.seed, iteration, self.rank, j]).generate_state(1)[0])
            out.append((index, seed))
        return out

    def epoch_of(self, iteration: int) -> float:
        return iteration * self.batch_size / self.per_epoch


class PlannedBatches(torch.utils.data.Sampler):
    """Batch sampler for a DataLoader: batches start_iter .. total-1 of a BatchPlan."""

    def __init__(self, plan: BatchPlan, start_iter: int, total: int):
        self.plan, self.start, self.total = plan, start_iter, total

    def __iter__(self):
        for it in range(self.start, self.total):
            yield self.plan.batch(it)

    def __len__(self) -> int:
        return max(0, self.total - self.start)


def prediction_size(h: int, w: int, base_size: int | None, stride: int = 16) -> tuple[int, int]:
    """Inference input size: short side `base_size` (what training saw at scale 1), multiples of 8."""
    s = (base_size / min(h, w)) if base_size else 1.0
    return max(stride, int(math.ceil(h * s / 8) * 8)), max(stride, int(math.ceil(w * s / 8) * 8))
