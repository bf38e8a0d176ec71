"""MaskCLIP+ student: a torchvision DeepLab-family network whose classifier is frozen text embeddings.

The network's last layer outputs D channels (CLIP's joint-space width) instead of K class scores. Those
features are L2-normalised and compared with the L2-normalised class text embeddings by a frozen 1x1
convolution (cosine similarity times a fixed logit scale). The embeddings are a buffer, not a parameter,
so the classes can be changed after training (`set_classes`) without new weights: the student stays
open-vocabulary, as in the paper (docs/architecture.md, "MaskCLIP+").
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights, ResNet101_Weights, ResNet50_Weights
from torchvision.models import segmentation as tv_seg
from torchvision.models.segmentation.lraspp import LRASPP

from ..errors import MaskCLIPError

# ImageNet statistics: the students' backbones were pre-trained with these (CLIP's own differ).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> (torchvision builder, ImageNet backbone weights, short description)
STUDENTS: dict[str, tuple[Callable[..., nn.Module], object, str]] = {
    "deeplabv3_resnet101": (tv_seg.deeplabv3_resnet101, ResNet101_Weights.IMAGENET1K_V1,
                            "DeepLabV3, ResNet-101 (the paper's backbone; GPU)"),
    "deeplabv3_resnet50": (tv_seg.deeplabv3_resnet50, ResNet50_Weights.IMAGENET1K_V1,
                           "DeepLabV3, ResNet-50 (GPU)"),
    "deeplabv3_mobilenet_v3_large": (tv_seg.deeplabv3_mobilenet_v3_large, MobileNet_V3_Large_Weights.IMAGENET1K_V1,
                                     "DeepLabV3, MobileNetV3-Large (light)"),
    "lraspp_mobilenet_v3_large": (tv_seg.lraspp_mobilenet_v3_large, MobileNet_V3_Large_Weights.IMAGENET1K_V1,
                                  "LR-ASPP, MobileNetV3-Large (lightest; CPU)"),
}
DEFAULT_GPU_STUDENT = "deeplabv3_resnet101"
DEFAULT_CPU_STUDENT = "lraspp_mobilenet_v3_large"
# CLIP's own temperature (softmax(100 * cosine)), used for the student's cosine logits too.
DEFAULT_LOGIT_SCALE = 100.0


class StudentUnavailableError(MaskCLIPError):
    """Unknown student name."""


def resolve_student_name(name: str | None, device: torch.device) -> str:
    """'auto'/None picks the paper's ResNet-101 DeepLab on CUDA and the light LR-ASPP on CPU."""
    if name in (None, "", "auto"):
        return DEFAULT_GPU_STUDENT if device.type == "cuda" else DEFAULT_CPU_STUDENT
    if name not in STUDENTS:
        raise StudentUnavailableError(
            f"unknown student {name!r}; choose one of: auto, {', '.join(STUDENTS)}")
    return name


def _build_backbone_net(name: str, out_channels: int, imagenet: bool) -> tuple[nn.Module, bool]:
    """Build the torchvision network with `out_channels` outputs; returns (net, imagenet_weights_loaded).

    ImageNet backbone weights are downloaded by torchvision (cached under ~/.cache/torch). Offline or
    on any download failure the network is built with random initialisation and a warning says so.
    """
    builder, weights, _ = STUDENTS[name]
    kwargs = dict(weights=None, num_classes=out_channels, aux_loss=False)
    if imagenet:
        try:
            return builder(weights_backbone=weights, **kwargs), True
        except Exception as exc:  # URLError, hash mismatch, corrupt cache file ...: all mean "no weights"
            warnings.warn(
                f"ImageNet weights for the {name} backbone could not be loaded ({exc}); the student starts "
                "from random initialisation, which needs many more iterations. Put the torchvision "
                f"checkpoint ({weights.url.rsplit('/', 1)[-1]}) in {torch.hub.get_dir()}/checkpoints to "
                "use it offline.", RuntimeWarning, stacklevel=3)
    return builder(weights_backbone=None, **kwargs), False


class Student(nn.Module):
    """DeepLab-family network + frozen text-embedding classifier.

    forward(x) -> logits [B,K,H,W] at the input resolution (classified at the network's output stride,
    then bilinearly upsampled, which is what the paper's mmseg heads do).
    """

    def __init__(self, name: str, class_embeddings: torch.Tensor, *, groups: Sequence[int] | None = None,
                 imagenet_backbone: bool = True, logit_scale: float = DEFAULT_LOGIT_SCALE):
        super().__init__()
        if name not in STUDENTS:
            raise StudentUnavailableError(f"unknown student {name!r}; choose one of: {', '.join(STUDENTS)}")
        emb, grp = _check_embeddings(class_embeddings, groups)
        self.name = name
        self.embed_dim = int(emb.shape[1])
        self.logit_scale = float(logit_scale)
        self.net, self.imagenet_loaded = _build_backbone_net(name, self.embed_dim, imagenet_backbone)
        self.register_buffer("class_embeddings", emb)
        self.register_buffer("class_groups", grp)

    @property
    def num_classes(self) -> int:
        return int(self.class_groups.max()) + 1

    def set_classes(self, class_embeddings: torch.Tensor, groups: Sequence[int] | None = None) -> None:
        """Swap the classifier for other classes (same D); no weight changes, no retraining."""
        emb, grp = _check_embeddings(class_embeddings, groups)
        if emb.shape[1] != self.embed_dim:
            raise MaskCLIPError(
                f"class embeddings have width {emb.shape[1]} but this student projects to {self.embed_dim} "
                "(it was trained with another CLIP model)")
        self.class_embeddings = emb.to(self.class_embeddings.device)
        self.class_groups = grp.to(self.class_groups.device)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised D-dim features at the network's output stride."""
        feats = self.net.backbone(x)
        proj = self.net.classifier(feats) if isinstance(self.net, LRASPP) else self.net.classifier(feats["out"])
        return F.normalize(proj.float(), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.embed(x)
        scores = self.logit_scale * F.conv2d(feat, self.class_embeddings.to(feat.dtype)[:, :, None, None])
        if scores.shape[1] != self.num_classes:  # several text rows per class (merged prompts): max over them
            index = self.class_groups[None, :, None, None].expand_as(scores)
            merged = scores.new_full((scores.shape[0], self.num_classes, *scores.shape[2:]), float("-inf"))
            scores = merged.scatter_reduce(1, index, scores, reduce="amax")
        return F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def metadata(self) -> dict:
        """What `student_from_state` needs to rebuild this network."""
        return {"name": self.name, "embed_dim": self.embed_dim, "logit_scale": self.logit_scale,
                "num_classes": self.num_classes}


def _check_embeddings(emb: torch.Tensor, groups: Sequence[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    emb = torch.as_tensor(emb).detach().float()
    if emb.ndim != 2 or emb.shape[0] < 1:
        raise MaskCLIPError(f"class embeddings must be a [R,D] matrix with R >= 1, got shape {tuple(emb.shape)}")
    grp = torch.arange(emb.shape[0]) if groups is None else torch.as_tensor(list(groups), dtype=torch.long)
    if grp.shape != (emb.shape[0],) or int(grp.min()) < 0 or \
            set(grp.tolist()) != set(range(int(grp.max()) + 1)):
        raise MaskCLIPError("class groups must map every embedding row to a class 0..K-1, each class used")
    return F.normalize(emb, dim=1), grp


def build_student(name: str, class_embeddings: torch.Tensor, *, groups: Sequence[int] | None = None,
                  imagenet_backbone: bool = True, logit_scale: float = DEFAULT_LOGIT_SCALE) -> Student:
    return Student(name, class_embeddings, groups=groups, imagenet_backbone=imagenet_backbone,
                   logit_scale=logit_scale)


def student_from_state(meta: dict, state_dict: dict) -> Student:
    """Rebuild a trained student (no ImageNet download: the weights come from the state dict)."""
    student = Student(meta["name"], state_dict["class_embeddings"], groups=state_dict["class_groups"].tolist(),
                      imagenet_backbone=False, logit_scale=meta["logit_scale"])
    student.load_state_dict(state_dict)
    return student


def random_class_embeddings(num_classes: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Fixed random unit vectors standing in for text embeddings (benchmarks/tests without CLIP)."""
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(num_classes, dim, generator=gen), dim=1)
