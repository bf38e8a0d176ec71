"""open_clip models: loading weights, and MaskCLIP's dense (per-patch) image features.

The dense path reuses the CLIP image encoder unchanged except for its last stage (DESIGN.md section 3):
- ViT: the last block's attention is replaced according to the dense mode (MaskCLIP: q.k attention
  skipped, each token keeps its own value; SCLIP, ClearCLIP, NACLIP: self-similarity attention).
- ModifiedResNet: the attention pool's v_proj and c_proj become 1x1 convolutions at every location.
The last-block computation of a ViT is pluggable (`DENSE_MODES`) so training-free successors of MaskCLIP
(SCLIP, ClearCLIP, NACLIP, ...) are small additions.
"""
from __future__ import annotations

import contextlib
import functools
import os
import socket
import uuid
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import open_clip
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import QuickGELU, ResidualAttentionBlock, VisionTransformer

from .errors import MaskCLIPError, UnsupportedModelError, WeightsUnavailableError
from .options import DENSE_MODE_NAMES
from .validation import check_device

CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(CONFIG_DIR)  # registers the tiny random-weight architectures (maskclip-tiny-*)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present, the CPU otherwise."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MaskCLIPError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu")
    return device


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or Path(value).suffix in {".pt", ".pth", ".bin", ".safetensors", ".npz"}


def _is_torchscript_archive(path: str) -> bool:
    """OpenAI's original .pt files are TorchScript archives (a zip holding code/ and constants.pkl)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _offline_unless_hub_reachable():
    """Without network, ask huggingface_hub for cached files only: it fails in a second instead of retrying
    for most of a minute, and weights downloaded earlier still load."""
    import huggingface_hub.constants as hf_constants

    previous = hf_constants.HF_HUB_OFFLINE
    hf_constants.HF_HUB_OFFLINE = previous or not _hub_reachable()
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = previous


# OpenAI's TorchScript archives hold these constants beside the weights; a state dict saved from such an
# archive keeps them, which marks it as OpenAI's.
OPENAI_ARCHIVE_CONSTANTS = ("input_resolution", "context_length", "vocab_size")
CHECKPOINT_QUICK_GELU_KEY = "quick_gelu"  # written by MaskCLIP.save_checkpoint beside "state_dict"


def _checkpoint_quick_gelu(path: str) -> bool:
    """Whether a state-dict checkpoint was trained with QuickGELU, as far as the file tells.

    Our own checkpoints say so explicitly; a state dict that still holds OpenAI's archive constants is
    OpenAI's; a file inside a Hugging Face repository of OpenAI weights (timm's `*.openai` names) too.
    Anything else is taken as GELU (open_clip's own and LAION weights). Cheap: the file is memory-mapped.
    """
    if any(part.lower().endswith(".openai") for part in Path(path).resolve().parts):
        return True
    if Path(path).suffix in (".safetensors", ".npz", ".npy"):
        return False
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # legacy (non-zip) files cannot be memory-mapped
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            return False  # the loader below reports what is wrong with the file
    if not isinstance(checkpoint, dict):
        return False
    if CHECKPOINT_QUICK_GELU_KEY in checkpoint:
        return bool(checkpoint[CHECKPOINT_QUICK_GELU_KEY])
    state = checkpoint.get("state_dict", checkpoint)
    return isinstance(state, dict) and any(k in state for k in OPENAI_ARCHIVE_CONSTANTS)


def _load_failure(exc: Exception) -> str:
    """Why a checkpoint did not load, in one short line (torch's refusal of a pickle is ~750 characters)."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError) or "weights only load failed" in str(exc).lower():
        return "it holds objects other than weights and plain data, so it was refused (loading it could run code)"
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 200 else text[:197] + "..."


def uses_quick_gelu(clip_model: torch.nn.Module) -> bool:
    """Whether the model's transformer MLPs use QuickGELU (x * sigmoid(1.702 x), OpenAI's activation)."""
    return any(isinstance(m, QuickGELU) for m in clip_model.modules())


def load_clip(model_name: str, pretrained: str | None, quick_gelu: bool | None = None
              ) -> tuple[torch.nn.Module, str]:
    """Build an open_clip model with weights; returns (model, weights_id).

    `weights_id` identifies the weights in cache signatures: the tag, the checkpoint file's path, size and
    modification time, or a fresh random token for random weights (so their features are never reused by
    another process).

    quick_gelu: the MLP activation. OpenAI's weights were trained with QuickGELU, and open_clip (3.x)
    builds them with nn.GELU unless told, which shifts every feature. None decides from the weights: a
    tag whose open_clip config says so ('openai'), a TorchScript archive (how OpenAI released them), or a
    state dict marked as OpenAI's (see `_checkpoint_quick_gelu`) get QuickGELU; anything else keeps the
    architecture's own activation (the `-quickgelu` configs have QuickGELU). True / False force it.
    """
    if model_name not in open_clip.list_models():
        raise UnsupportedModelError(
            f"unknown model '{model_name}'. open_clip models include ViT-B-16, ViT-B-32, ViT-L-14, RN50, RN101, "
            f"RN50x16 (see open_clip.list_models()); tiny test models: maskclip-tiny-vit, maskclip-tiny-rn")
    activation = {} if quick_gelu is None else {"quick_gelu": bool(quick_gelu)}
    if pretrained is None:
        return open_clip.create_model(model_name, pretrained=None, **activation), f"random:{uuid.uuid4().hex}"

    pretrained = str(pretrained)
    if os.path.isfile(pretrained):
        stat = os.stat(pretrained)
        weights_id = f"file:{os.path.abspath(pretrained)}:{stat.st_size}:{stat.st_mtime_ns}"
        try:
            if _is_torchscript_archive(pretrained):
                activation = activation or {"quick_gelu": True}
                model = open_clip.create_model(model_name, pretrained=None, **activation)
                with warnings.catch_warnings():  # torch deprecates TorchScript; OpenAI's files still are
                    warnings.simplefilter("ignore", FutureWarning)
                    state = torch.jit.load(pretrained, map_location="cpu").state_dict()
                expected = model.state_dict().keys()
                missing = [k for k in expected if k not in state]
                if missing:
                    raise KeyError(f"missing weights {missing[:5]}")
                # archives also hold non-weight constants (input_resolution, attn_mask, ...): ignored
                model.load_state_dict({k: v for k, v in state.items() if k in expected})
            else:
                if not activation and _checkpoint_quick_gelu(pretrained):
                    activation = {"quick_gelu": True}
                model = open_clip.create_model(model_name, pretrained=None, **activation)
                incompatible = open_clip.load_checkpoint(model, pretrained, strict=False)
                unexpected = [k for k in incompatible.unexpected_keys if k not in OPENAI_ARCHIVE_CONSTANTS]
                if incompatible.missing_keys or unexpected:
                    raise KeyError(f"missing weights {incompatible.missing_keys[:5]}, unexpected {unexpected[:5]}")
        except Exception as exc:  # a wrong file is the user's problem to fix: say which file and why
            raise WeightsUnavailableError(
                f"could not load checkpoint '{pretrained}' into {model_name}: {_load_failure(exc)}. Expected an "
                f"OpenAI CLIP .pt file or an open_clip state dict for this architecture") from None
        return model, weights_id
    if _looks_like_path(pretrained):
        raise WeightsUnavailableError(f"checkpoint file not found: {pretrained}")

    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained not in tags:
        raise WeightsUnavailableError(
            f"'{pretrained}' is neither a checkpoint file nor a known weights tag for {model_name} "
            f"(known tags: {', '.join(tags) or 'none'})")
    if not activation and open_clip.get_pretrained_cfg(model_name, pretrained).get("quick_gelu"):
        activation = {"quick_gelu": True}
    try:
        with _offline_unless_hub_reachable():
            model = open_clip.create_model(model_name, pretrained=pretrained, **activation)
    except Exception as exc:
        raise WeightsUnavailableError(
            f"could not download the CLIP weights {model_name}/{pretrained} ({type(exc).__name__}). Without "
            f"network access, use a local checkpoint file instead (an OpenAI CLIP .pt or an open_clip state "
            f"dict for {model_name}: the annotator's weights field, or --pretrained /path/to/{model_name}.pt "
            f"on the command line), or copy the Hugging Face cache (HF_HOME) from a machine that has "
            f"downloaded it") from None
    return model, f"tag:{pretrained}"


def clip_mean_std(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The image normalisation the model was trained with (OpenAI's CLIP statistics by default)."""
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    mean = cfg.get("mean", getattr(model.visual, "image_mean", None)) or open_clip.OPENAI_DATASET_MEAN
    std = cfg.get("std", getattr(model.visual, "image_std", None)) or open_clip.OPENAI_DATASET_STD
    return tuple(mean), tuple(std)


# --- ViT dense modes ---------------------------------------------------------------------------------
# A dense mode replaces the last ViT block: (block, tokens [B, L, C] batch-first with the class token at
# index 0, patch grid (h, w), **params) -> (tokens [B, L, C], keys [B, L, C]). Attention is per head with
# scale head_dim^-0.5, as in CLIP. Keys for key smoothing are the last block's k through out_proj in every
# mode: that is what MaskCLIP's official code smooths with, and the successors' official code has no KS.


def _heads(block: ResidualAttentionBlock, x: torch.Tensor):
    """q, k, v of the block's attention, [B, heads, L, head_dim] each, plus k through out_proj [B, L, C]."""
    attn = block.attn
    q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    split = lambda t: t.unflatten(-1, (attn.num_heads, -1)).transpose(1, 2)  # noqa: E731
    return split(q), split(k), split(v), attn.out_proj(k)


def _merge(block: ResidualAttentionBlock, heads: torch.Tensor) -> torch.Tensor:
    """[B, heads, L, head_dim] -> out_proj over the concatenated heads, [B, L, C]."""
    return block.attn.out_proj(heads.transpose(1, 2).flatten(2))


def _mlp_residual(block: ResidualAttentionBlock, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    x = x + block.ls_1(attended)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def maskclip_last_block(block, x, grid):
    """MaskCLIP: identity attention (each token keeps its own value), residual and MLP kept."""
    _q, _k, v, keys = _heads(block, x)
    return _mlp_residual(block, x, _merge(block, v)), keys


def sclip_last_block(block, x, grid):
    """SCLIP (Wang et al., ECCV 2024): correlative self-attention softmax(s q q^T) + softmax(s k k^T),
    residual and MLP kept."""
    q, k, v, keys = _heads(block, x)
    attended = F.scaled_dot_product_attention(q, q, v) + F.scaled_dot_product_attention(k, k, v)
    return _mlp_residual(block, x, _merge(block, attended)), keys


def clearclip_last_block(block, x, grid):
    """ClearCLIP (Lan et al., ECCV 2024): softmax(s q q^T) attention; no residual, no MLP."""
    q, _k, v, keys = _heads(block, x)
    return block.ls_1(_merge(block, F.scaled_dot_product_attention(q, q, v))), keys


@functools.lru_cache(maxsize=4)
def neighbourhood_bias(grid: tuple[int, int], sigma: float, device: torch.device) -> torch.Tensor:
    """NACLIP's Omega [1 + h*w, 1 + h*w]: exp(-d^2 / (2 sigma^2)) over patch-grid distance d, 0 on the class
    token's row and column."""
    rows, cols = torch.meshgrid(torch.arange(grid[0], device=device), torch.arange(grid[1], device=device),
                                indexing="ij")
    yx = torch.stack([rows.flatten(), cols.flatten()], dim=1).float()
    omega = torch.exp(-(yx[:, None] - yx[None]).square().sum(-1) / (2 * sigma ** 2))
    return F.pad(omega, (1, 0, 1, 0))


def naclip_last_block(block, x, grid, sigma: float = 5.0):
    """NACLIP (Hajimiri et al., WACV 2025): softmax(s k k^T + Omega) attention with a Gaussian neighbourhood
    bias of std `sigma` patches; no residual, no MLP."""
    _q, k, v, keys = _heads(block, x)
    bias = neighbourhood_bias(tuple(grid), float(sigma), x.device).to(x.dtype)
    return block.ls_1(_merge(block, F.scaled_dot_product_attention(k, k, v, attn_mask=bias))), keys


@dataclass(frozen=True)
class DenseMode:
    """A last-block variant and its parameters (which belong to the feature-cache signature)."""

    last_block: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    params: tuple[tuple[str, float], ...] = ()

    def __call__(self, block, x, grid):
        return self.last_block(block, x, grid, **dict(self.params))


DENSE_MODES: dict[str, DenseMode] = {
    "maskclip": DenseMode(maskclip_last_block),
    "sclip": DenseMode(sclip_last_block),
    "clearclip": DenseMode(clearclip_last_block),
    "naclip": DenseMode(naclip_last_block, (("sigma", 5.0),)),
}
assert tuple(DENSE_MODES) == DENSE_MODE_NAMES


def dense_mode_key(mode: str) -> dict:
    """What a mode contributes to the feature-cache signature: its name and parameters."""
    return {"name": mode, **dict(DENSE_MODES[mode].params)}


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad right/bottom so both sides are multiples of `multiple` (zero = the mean colour once normalised)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


class ViTDense:
    """Dense features of an open_clip VisionTransformer (batch-first or not) in one of the DENSE_MODES."""

    def __init__(self, visual: VisionTransformer, mode: str):
        blocks = visual.transformer.resblocks
        if visual.attn_pool is not None or visual.proj is None:
            raise UnsupportedModelError("ViTs with an attentional pooler or without a projection are not supported")
        if not all(type(b) is ResidualAttentionBlock for b in blocks) or hasattr(blocks[-1], "ln_1_kv"):
            raise UnsupportedModelError("only open_clip's standard ViT blocks are supported (no custom attention)")
        if blocks[-1].attn.in_proj_weight is None:
            raise UnsupportedModelError("the last block's attention must use a packed q/k/v projection")
        if mode not in DENSE_MODES:
            raise UnsupportedModelError(f"unknown dense mode '{mode}' (known: {', '.join(DENSE_MODES)})")
        self.visual = visual
        self.last_block = DENSE_MODES[mode]
        self.stride = visual.patch_size[0]
        self._pos_cache: dict[tuple, torch.Tensor] = {}

    def positional_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """The [1 + h*w, C] table for a patch grid: as trained at the native grid, bicubic-resized otherwise."""
        pos = self.visual.positional_embedding
        if tuple(grid) == tuple(self.visual.grid_size):
            return pos
        key = (tuple(grid), pos.data_ptr(), pos._version, pos.device, pos.dtype)
        if key not in self._pos_cache:
            gh0, gw0 = self.visual.grid_size
            table = pos[1:].reshape(1, gh0, gw0, -1).permute(0, 3, 1, 2)
            table = F.interpolate(table, size=tuple(grid), mode="bicubic", align_corners=False, antialias=True)
            table = table.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)
            self._pos_cache.clear()  # keep only the latest size: bounded memory, sizes rarely alternate
            self._pos_cache[key] = torch.cat([pos[:1], table], dim=0)
        return self._pos_cache[key]

    def tokens_before_last_block(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(tokens [B, 1 + h*w, C] batch-first, class token first, patch grid (h, w)) entering the last block."""
        v = self.visual
        x = v.conv1(_pad_to_multiple(x, self.stride))
        batch, width, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(batch, 1, width)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding((gh, gw)).to(x.dtype)
        x = v.ln_pre(x)
        batch_first = v.transformer.batch_first
        if not batch_first:
            x = x.transpose(0, 1)
        for block in v.transformer.resblocks[:-1]:
            x = block(x)
        return (x if batch_first else x.transpose(0, 1)), (gh, gw)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.visual
        x, (gh, gw) = self.tokens_before_last_block(x)
        # the last block batch-first with the class token inside: real attention modes mix tokens
        x, keys = self.last_block(v.transformer.resblocks[-1], x, (gh, gw))
        features = v.ln_post(x)[:, 1:] @ v.proj
        to_map = lambda t: t.transpose(1, 2).reshape(x.shape[0], t.shape[-1], gh, gw)  # noqa: E731
        return to_map(features), to_map(keys[:, 1:])


class ResNetDense:
    """Dense features of an open_clip ModifiedResNet: attention pool value path as 1x1 convolutions."""

    def __init__(self, visual: ModifiedResNet, mode: str):
        if mode != "maskclip":
            raise UnsupportedModelError(
                f"dense mode '{mode}' needs a ViT model (e.g. ViT-B-16); ResNet models support only 'maskclip'")
        self.visual = visual
        self.stride = 32

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.visual
        x = v.stem(_pad_to_multiple(x, self.stride))
        x = v.layer4(v.layer3(v.layer2(v.layer1(x))))
        x = x.permute(0, 2, 3, 1)
        pool = v.attnpool
        features = pool.c_proj(pool.v_proj(x))
        keys = pool.k_proj(x)
        return features.permute(0, 3, 1, 2), keys.permute(0, 3, 1, 2)


def dense_encoder(clip_model: torch.nn.Module, mode: str = "maskclip") -> ViTDense | ResNetDense:
    """The dense feature extractor for a CLIP model, or a clear error for unsupported architectures."""
    visual = clip_model.visual
    if isinstance(visual, VisionTransformer):
        return ViTDense(visual, mode)
    if isinstance(visual, ModifiedResNet):
        return ResNetDense(visual, mode)
    raise UnsupportedModelError(
        f"{type(visual).__name__} image towers are not supported; use an open_clip ViT (e.g. ViT-B-16) or "
        f"ModifiedResNet (e.g. RN50)")
