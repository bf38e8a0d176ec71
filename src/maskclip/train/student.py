"""MaskCLIP+ student: a network whose classifier is frozen text embeddings.

Two kinds of backbone: the CLIP image tower the teacher uses (`clip`: a trainable copy of its MaskCLIP dense
encoder plus a light decoder, so the student starts from the teacher's own features and needs no download),
or a torchvision DeepLab-family network (ImageNet weights when they can be downloaded, random otherwise).

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
from ..student_names import (CLIP_STUDENT, DEFAULT_CPU_STUDENT, DEFAULT_GPU_STUDENT, STUDENT_NAMES,
                             TORCHVISION_STUDENTS)

# ImageNet statistics: the students' backbones were pre-trained with these (CLIP's own differ).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> (torchvision builder, ImageNet backbone weights, short description); names and defaults: student_names
_BUILDERS = {
    "deeplabv3_resnet101": (tv_seg.deeplabv3_resnet101, ResNet101_Weights.IMAGENET1K_V1),
    "deeplabv3_resnet50": (tv_seg.deeplabv3_resnet50, ResNet50_Weights.IMAGENET1K_V1),
    "deeplabv3_mobilenet_v3_large": (tv_seg.deeplabv3_mobilenet_v3_large, MobileNet_V3_Large_Weights.IMAGENET1K_V1),
    "lraspp_mobilenet_v3_large": (tv_seg.lraspp_mobilenet_v3_large, MobileNet_V3_Large_Weights.IMAGENET1K_V1),
}
STUDENTS: dict[str, tuple[Callable[..., nn.Module], object, str]] = {
    name: (*_BUILDERS[name], description) for name, description in TORCHVISION_STUDENTS.items()}
# CLIP's own temperature (softmax(100 * cosine)), used for the student's cosine logits too.
DEFAULT_LOGIT_SCALE = 100.0


class StudentUnavailableError(MaskCLIPError):
    """Unknown student name."""


def resolve_student_name(name: str | None, device: torch.device) -> str:
    """'auto'/None picks the paper's ResNet-101 DeepLab on CUDA and the clip student on CPU."""
    if name in (None, "", "auto"):
        return DEFAULT_GPU_STUDENT if device.type == "cuda" else DEFAULT_CPU_STUDENT
    if name not in STUDENT_NAMES:
        raise StudentUnavailableError(
            f"unknown student {name!r}; choose one of: auto, {', '.join(STUDENT_NAMES)}")
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


class _TrainableViTDense:
    """ViTDense without its positional-table cache (the table must follow the trained weights)."""

    def __new__(cls, visual, mode):
        from ..backbone import ViTDense

        class Uncached(ViTDense):
            def positional_embedding(self, grid):
                pos = self.visual.positional_embedding
                if tuple(grid) == tuple(self.visual.grid_size):
                    return pos
                gh0, gw0 = self.visual.grid_size
                table = pos[1:].reshape(1, gh0, gw0, -1).permute(0, 3, 1, 2)
                table = F.interpolate(table, size=tuple(grid), mode="bicubic", align_corners=False, antialias=True)
                return torch.cat([pos[:1], table.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)], dim=0)

        return Uncached(visual, mode)


# The clip student's decoders (ClipBackbone): "light" refines the features at 2x the patch grid; "guided" also
# sees the image through a small convolutional stem at 1/2 of the input resolution, so it can place class
# boundaries between patches (a patch of the toy CLIP is 8 px, of ViT-B/16 16 px).
CLIP_DECODERS = ("light", "guided")


class _GuidedDecoder(nn.Module):
    """Features upsampled to 1/2 of the input + a 2-conv image stem -> a zero-initialised residual.

    Starts as the identity on the upsampled features (the untrained student is still MaskCLIP); training
    learns where the image's edges move the class boundaries that the patch grid blurs."""

    def __init__(self, dim: int, hidden: int, stem: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, stride=2, padding=1), nn.GELU(),
                                  nn.Conv2d(stem, stem, 3, padding=1), nn.GELU())
        self.reduce = nn.Conv2d(dim, hidden, 1)
        self.fuse = nn.Sequential(nn.Conv2d(hidden + stem, hidden, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(hidden, dim, 3, padding=1))
        nn.init.zeros_(self.fuse[-1].weight)
        nn.init.zeros_(self.fuse[-1].bias)

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        edges = self.stem(image)
        up = F.interpolate(features, size=edges.shape[-2:], mode="bilinear", align_corners=False)
        return up + self.fuse(torch.cat([self.reduce(up), edges], dim=1))


class ClipBackbone(nn.Module):
    """The teacher's CLIP image tower as a student backbone (MaskCLIP+'s recipe, no download needed).

    A trainable copy of the open_clip visual tower run through MaskCLIP's dense path (ViT: the patch tokens
    with the last block's q.k attention skipped, through ln_post and the projection; ModifiedResNet: the
    attention pool's value path as 1x1 convolutions over the last stage), so its output is in CLIP's joint
    space from the first iteration: the untrained student equals MaskCLIP without key smoothing / prompt
    denoising. A light decoder (2x bilinear upsampling + a residual 3x3 conv block, zero-initialised, so it
    starts as the identity) refines the features; the logits are upsampled bilinearly to the input.
    Inputs arrive ImageNet-normalised (the training pipeline's statistics) and are re-normalised with CLIP's.
    `freeze_blocks` freezes the patch embedding and the first N transformer blocks (ResNet: the stem and
    the first N stages); ResNet BatchNorm statistics stay frozen (fine-tuning batches are small).
    `dense_mode` is the ViT's last-block variant (maskclip.dense_modes: the teacher's, so the untrained
    student is its teacher without post-processing); `decoder` one of CLIP_DECODERS.
    """

    def __init__(self, visual: nn.Module, mean: Sequence[float], std: Sequence[float], *, freeze_blocks: int = 0,
                 dense_mode: str = "maskclip", hidden: int = 128, decoder: str = "light"):
        super().__init__()
        from open_clip.modified_resnet import ModifiedResNet
        from open_clip.transformer import VisionTransformer

        from ..backbone import ResNetDense

        self.visual = visual
        self.is_vit = isinstance(visual, VisionTransformer)
        if decoder not in CLIP_DECODERS:
            raise StudentUnavailableError(f"unknown clip student decoder {decoder!r}; choose one of: "
                                          f"{', '.join(CLIP_DECODERS)}")
        if self.is_vit:
            self._encoder = _TrainableViTDense(visual, dense_mode)
        elif isinstance(visual, ModifiedResNet):
            self._encoder = ResNetDense(visual, "maskclip")  # its only mode
        else:
            raise StudentUnavailableError(f"the clip student needs an open_clip ViT or ModifiedResNet image tower, "
                                          f"not {type(visual).__name__}")
        self.stride = int(self._encoder.stride)
        # ImageNet-normalised -> CLIP-normalised: x * a + b per channel
        im_mean, im_std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        c_mean, c_std = torch.tensor(list(mean), dtype=torch.float32), torch.tensor(list(std), dtype=torch.float32)
        self.register_buffer("in_scale", (im_std / c_std)[None, :, None, None])
        self.register_buffer("in_shift", ((im_mean - c_mean) / c_std)[None, :, None, None])
        dim = int(visual.output_dim)
        self.decoder_kind = decoder
        if decoder == "guided":
            self.decoder = _GuidedDecoder(dim, hidden)
        else:
            self.decoder = nn.Sequential(nn.Conv2d(dim, hidden, 3, padding=1), nn.GELU(),
                                         nn.Conv2d(hidden, dim, 3, padding=1))
            nn.init.zeros_(self.decoder[-1].weight)
            nn.init.zeros_(self.decoder[-1].bias)
        self.freeze_blocks = int(freeze_blocks)
        self._freeze(self.freeze_blocks)

    def _freeze(self, n: int) -> None:
        if n <= 0:
            return
        v = self.visual
        if self.is_vit:
            frozen = [v.conv1, v.ln_pre, *v.transformer.resblocks[:n]]
            for p in (v.class_embedding, v.positional_embedding):
                p.requires_grad_(False)
        else:  # ModifiedResNet: the stem's convolutions / norms, then layer1 .. layerN
            frozen = [m for name, m in v.named_children() if name.startswith(("conv", "bn"))]
            frozen += [getattr(v, f"layer{i}") for i in range(1, min(n, 4) + 1)]
        for m in frozen:
            m.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.visual.modules():  # ResNet BatchNorm: keep CLIP's running statistics
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.in_scale + self.in_shift
        h, w = x.shape[-2:]
        s = self.stride
        size = (max(s, round(h / s) * s), max(s, round(w / s) * s))
        if size != (h, w):  # a whole number of patches, aligned with the image (no padding offset)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        features, _ = self._encoder(x)
        if self.decoder_kind == "guided":
            return self.decoder(features, x)
        features = F.interpolate(features, scale_factor=2, mode="bilinear", align_corners=False)
        return features + self.decoder(features)


class Student(nn.Module):
    """Backbone + frozen text-embedding classifier.

    forward(x) -> logits [B,K,H,W] at the input resolution (classified at the network's output stride,
    then bilinearly upsampled, which is what the paper's mmseg heads do).
    name `clip` needs the teacher's CLIP model (`clip_model`, its weights are copied) or, to rebuild a
    trained student, `clip_spec` ({"model", "quick_gelu", "mean", "std", "freeze_blocks", "dense_mode",
    "decoder"}: the architecture with random weights, which the state dict then replaces).
    clip_dense_mode: the tower's last-block variant (None: the teacher's, `clip_model.dense_mode`).
    """

    def __init__(self, name: str, class_embeddings: torch.Tensor, *, groups: Sequence[int] | None = None,
                 imagenet_backbone: bool = True, logit_scale: float = DEFAULT_LOGIT_SCALE,
                 clip_model: nn.Module | None = None, clip_spec: dict | None = None, freeze_blocks: int = 0,
                 clip_dense_mode: str | None = None, clip_decoder: str = "light"):
        super().__init__()
        if name not in STUDENT_NAMES:
            raise StudentUnavailableError(f"unknown student {name!r}; choose one of: {', '.join(STUDENT_NAMES)}")
        emb, grp = _check_embeddings(class_embeddings, groups)
        self.name = name
        self.embed_dim = int(emb.shape[1])
        self.logit_scale = float(logit_scale)
        self.clip_spec = None
        if name == CLIP_STUDENT:
            self.net, self.clip_spec = _build_clip_backbone(clip_model, clip_spec, freeze_blocks, clip_dense_mode,
                                                            clip_decoder)
            if int(self.net.visual.output_dim) != self.embed_dim:
                raise MaskCLIPError(f"the CLIP tower outputs {self.net.visual.output_dim} dimensions but the class "
                                    f"embeddings have {self.embed_dim}")
            # "starts from trained weights" (what the automatic self-training switch asks)
            self.imagenet_loaded = bool(self.clip_spec.get("pretrained", True))
        else:
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
        if isinstance(self.net, ClipBackbone):
            return F.normalize(self.net(x).float(), dim=1)
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
        meta = {"name": self.name, "embed_dim": self.embed_dim, "logit_scale": self.logit_scale,
                "num_classes": self.num_classes}
        if self.clip_spec is not None:
            meta["clip"] = dict(self.clip_spec)
        return meta


def _build_clip_backbone(clip_model: nn.Module | None, spec: dict | None, freeze_blocks: int,
                         dense_mode: str | None = None, decoder: str = "light") -> tuple[ClipBackbone, dict]:
    import copy

    from open_clip.transformer import VisionTransformer

    from ..weights import clip_mean_std, load_clip, uses_quick_gelu

    if clip_model is not None:
        model_name = getattr(clip_model, "model_name", None)  # a maskclip.MaskCLIP: its name and weights id
        weights_id = str(getattr(clip_model, "weights_id", ""))
        mode = dense_mode or getattr(clip_model, "dense_mode", None) or "maskclip"
        clip_model = getattr(clip_model, "clip", clip_model)  # ... or the open_clip model itself
        mean, std = clip_mean_std(clip_model)
        spec = {"model": model_name or (spec or {}).get("model"), "quick_gelu": uses_quick_gelu(clip_model),
                "mean": list(mean), "std": list(std), "freeze_blocks": int(freeze_blocks),
                "pretrained": not weights_id.startswith("random:"), "dense_mode": mode, "decoder": decoder}
        visual = copy.deepcopy(clip_model.visual).float().cpu()
    elif spec is not None and spec.get("model"):
        spec = dict(spec)
        clip_model, _ = load_clip(spec["model"], None, spec.get("quick_gelu"))
        visual = clip_model.visual.float()
        freeze_blocks = int(spec.get("freeze_blocks", freeze_blocks))
    else:
        raise MaskCLIPError("the clip student needs the teacher's CLIP model (or a saved student's CLIP spec)")
    for p in visual.parameters():
        p.requires_grad_(True)
    if not isinstance(visual, VisionTransformer):
        spec["dense_mode"] = "maskclip"  # a ResNet tower has one dense path
    # files written before these options: MaskCLIP's dense path and the light decoder
    return ClipBackbone(visual, spec["mean"], spec["std"], freeze_blocks=freeze_blocks,
                        dense_mode=spec.get("dense_mode", "maskclip"), decoder=spec.get("decoder", "light")), spec


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
                  imagenet_backbone: bool = True, logit_scale: float = DEFAULT_LOGIT_SCALE,
                  clip_model: nn.Module | None = None, clip_spec: dict | None = None,
                  freeze_blocks: int = 0, clip_dense_mode: str | None = None, clip_decoder: str = "light") -> Student:
    return Student(name, class_embeddings, groups=groups, imagenet_backbone=imagenet_backbone,
                   logit_scale=logit_scale, clip_model=clip_model, clip_spec=clip_spec, freeze_blocks=freeze_blocks,
                   clip_dense_mode=clip_dense_mode, clip_decoder=clip_decoder)


def student_from_state(meta: dict, state_dict: dict) -> Student:
    """Rebuild a trained student (no ImageNet download: the weights come from the state dict)."""
    student = Student(meta["name"], state_dict["class_embeddings"], groups=state_dict["class_groups"].tolist(),
                      imagenet_backbone=False, logit_scale=meta["logit_scale"], clip_spec=meta.get("clip"))
    student.load_state_dict(state_dict)
    return student


def random_class_embeddings(num_classes: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Fixed random unit vectors standing in for text embeddings (benchmarks/tests without CLIP)."""
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(num_classes, dim, generator=gen), dim=1)
