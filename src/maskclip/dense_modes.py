"""The dense-mode registry: every way of turning CLIP's last ViT block into per-patch features, in one table.

Each mode is one `DenseModeSpec`: its name (what settings, the command line and caches store), the label
the annotator shows, the segmentation defaults its paper evaluates with, the parameters of its last-block
computation (part of the feature-cache signature), the paper and the mIoU it reports. Everything else
(`maskclip.options.DENSE_MODE_NAMES` / `MODE_DEFAULTS`, the CLI's `--dense-mode` choices and help, the
annotator's combo box) derives from `DENSE_MODES`. Adding a mode is one entry here plus its last-block
function in `maskclip.backbone.LAST_BLOCKS`.

No torch here: the command line parses `--dense-mode` before any model is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class ModeDefaults:
    temperature: float  # logit scale: probabilities are softmax(temperature * cosine)
    key_smoothing: bool
    prompt_denoising: bool
    window: int  # sliding window (pixels, after scaling) and its stride
    stride: int
    window_norm: bool  # L2-normalise each window's features before averaging overlaps


@dataclass(frozen=True)
class DenseModeSpec:
    name: str
    label: str  # what the annotator shows
    defaults: ModeDefaults
    paper: str
    # mIoU (%) the paper reports for its own method with ViT-B/16 OpenAI weights, training-free,
    # sliding-window protocol
    paper_results: Mapping[str, float]
    params: tuple[tuple[str, float], ...] = ()  # keyword arguments of the last-block function
    vit_only: bool = True  # ModifiedResNet towers support only "maskclip"


# MaskCLIP's window is this product's (whole image up to 768 px, cheap on a CPU); the successors evaluate
# with 224-pixel windows every 112 pixels at short side 336 and no KS / PD. The MaskCLIP results row is as
# re-evaluated by the successors under their protocol, without KS/PD.
_REGISTRY = (
    DenseModeSpec(
        "maskclip", "MaskCLIP", ModeDefaults(100.0, True, True, 768, 512, False),
        "Zhou, Loy, Dai. Extract Free Dense Labels from CLIP. ECCV 2022",
        {"VOC21": 38.8, "Context60": 23.6, "COCO-Stuff": 16.4, "Cityscapes": 12.6, "ADE20K": 9.8},
        vit_only=False),
    DenseModeSpec(
        "sclip", "SCLIP", ModeDefaults(40.0, False, False, 224, 112, True),
        "Wang, Mei, Yuille. SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference. ECCV 2024",
        {"VOC21": 59.1, "Context60": 30.4, "COCO-Stuff": 22.4, "Cityscapes": 32.2, "ADE20K": 16.1}),
    DenseModeSpec(
        "clearclip", "ClearCLIP", ModeDefaults(50.0, False, False, 224, 112, True),
        "Lan et al. ClearCLIP: Decomposing CLIP Representations for Dense Vision-Language Inference. ECCV 2024",
        {"VOC21": 51.8, "Context60": 32.6, "COCO-Stuff": 23.9, "Cityscapes": 30.0, "ADE20K": 16.7}),
    DenseModeSpec(
        "naclip", "NACLIP", ModeDefaults(40.0, False, False, 224, 112, True),
        "Hajimiri, Ben Ayed, Dolz. Pay Attention to Your Neighbours: Training-Free Open-Vocabulary "
        "Semantic Segmentation. WACV 2025",
        {"VOC21": 58.9, "Context60": 32.2, "COCO-Stuff": 23.3, "Cityscapes": 35.5, "ADE20K": 17.4},
        params=(("sigma", 5.0),)),
)

DENSE_MODES: dict[str, DenseModeSpec] = {spec.name: spec for spec in _REGISTRY}
DENSE_MODE_NAMES: tuple[str, ...] = tuple(DENSE_MODES)
DENSE_MODE_LABELS: dict[str, str] = {name: spec.label for name, spec in DENSE_MODES.items()}


def dense_mode(name: str) -> DenseModeSpec:
    """The registry entry of a mode; an unknown name raises MaskCLIPError naming the known ones."""
    from .errors import MaskCLIPError

    try:
        return DENSE_MODES[name]
    except (KeyError, TypeError):
        raise MaskCLIPError(f"unknown dense mode '{name}' (known: {', '.join(DENSE_MODE_NAMES)})") from None


def successor_names() -> tuple[str, ...]:
    """The training-free successors of MaskCLIP (every mode but maskclip), in registry order."""
    return tuple(n for n in DENSE_MODE_NAMES if n != "maskclip")


def per_mode_text(field: str, fmt=lambda v: f"{v:g}") -> str:
    """'maskclip 100, sclip 40, ...': one default field of every mode, for help texts."""
    return ", ".join(f"{name} {fmt(getattr(spec.defaults, field))}" for name, spec in DENSE_MODES.items())
