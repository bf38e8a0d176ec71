"""MaskCLIP's dense (per-patch) image features from an open_clip model (loading the weights: maskclip.weights).

The dense path reuses the CLIP image encoder unchanged except for its last stage (docs/architecture.md, "The method, in short"):
- ViT: the last block's attention is replaced according to the dense mode (MaskCLIP: q.k attention
  skipped, each token keeps its own value; SCLIP, ClearCLIP, NACLIP: self-similarity attention).
- ModifiedResNet: the attention pool's v_proj and c_proj become 1x1 convolutions at every location.
The last-block computation of a ViT is pluggable (`LAST_BLOCKS`, one per entry of the registry
maskclip.dense_modes) so training-free successors of MaskCLIP (SCLIP, ClearCLIP, NACLIP, ...) are small
additions.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

from .dense_modes import DENSE_MODE_NAMES, DENSE_MODES as DENSE_MODE_SPECS
from .errors import UnsupportedModelError


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


# The last-block computation of each mode in the registry (maskclip.dense_modes): adding a mode is its
# registry entry plus its function here.
LAST_BLOCKS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "maskclip": maskclip_last_block,
    "sclip": sclip_last_block,
    "clearclip": clearclip_last_block,
    "naclip": naclip_last_block,
}
DENSE_MODES: dict[str, DenseMode] = {name: DenseMode(LAST_BLOCKS[name], spec.params)
                                     for name, spec in DENSE_MODE_SPECS.items()}
assert tuple(DENSE_MODES) == DENSE_MODE_NAMES and set(LAST_BLOCKS) == set(DENSE_MODES)


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
        if mode not in DENSE_MODE_SPECS or DENSE_MODE_SPECS[mode].vit_only:
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
