"""SCLIP / ClearCLIP / NACLIP dense modes against oracles written from the papers' official formulas.

The oracles follow the official implementations' layout (length-first tokens, heads folded into the batch,
torch.bmm) and build NACLIP's neighbourhood bias the way its code does (a Gaussian window convolved with
one-hot patch maps), so they share nothing with `maskclip.backbone` but open_clip's own modules.
"""
from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

import maskclip
from maskclip.errors import UnsupportedModelError

SIZES = [(224, 224), (160, 288)]


def naclip_omega(gh, gw, std=5.0):
    """NACLIP's attention addition: a (2h-1)x(2w-1) Gaussian window slid over one-hot patch maps, zero-padded
    for the class token."""
    ys = torch.arange(-(gh - 1), gh, dtype=torch.float64)
    xs = torch.arange(-(gw - 1), gw, dtype=torch.float64)
    window = torch.exp(-(ys[:, None] ** 2 + xs[None] ** 2) / (2 * std ** 2))
    one_hot = torch.eye(gh * gw, dtype=torch.float64).view(gh * gw, 1, gh, gw)
    out = F.conv2d(one_hot, window[None, None], padding="same").view(gh * gw, gh * gw)
    return F.pad(out, (1, 0, 1, 0)).float()


def official_last_block(mode, block, x, grid):
    """x: [L, N, C] (length-first, as the official code runs CLIP)."""
    attn = block.attn
    length, bsz, embed_dim = x.shape
    heads = attn.num_heads
    head_dim = embed_dim // heads
    scale = head_dim ** -0.5
    q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.contiguous().view(length, bsz * heads, head_dim).transpose(0, 1) for t in (q, k, v))
    qq = torch.bmm(q, q.transpose(1, 2)) * scale
    kk = torch.bmm(k, k.transpose(1, 2)) * scale
    if mode == "sclip":
        weights = F.softmax(qq, dim=-1) + F.softmax(kk, dim=-1)
    elif mode == "clearclip":
        weights = F.softmax(qq, dim=-1)
    else:
        weights = F.softmax(kk + naclip_omega(*grid).to(kk.device), dim=-1)
    out = torch.bmm(weights, v).transpose(0, 1).contiguous().view(length, bsz, embed_dim)
    out = attn.out_proj(out)
    if mode == "sclip":
        x = x + out
        return x + block.mlp(block.ln_2(x))
    return out


@pytest.fixture(scope="module")
def vit_b16():
    torch.manual_seed(1)
    return maskclip.load("ViT-B-16", pretrained=None, device="cpu")


@pytest.fixture(scope="module")
def before_last_block(vit_b16):
    """Per size: (input, tokens entering the last block [L, N, C], open_clip visual at that size)."""
    out = {}
    for size in SIZES:
        visual = vit_b16.clip.visual
        if size != tuple(visual.image_size):  # open_clip's own model at this size (its loader resizes pos)
            resized = open_clip.create_model("ViT-B-16", pretrained=None, force_image_size=size)
            state = vit_b16.clip.state_dict()
            open_clip.model.resize_pos_embed(state, resized)
            resized.load_state_dict(state)
            visual = resized.visual.eval()
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            tokens = visual._embeds(x)
            for block in visual.transformer.resblocks[:-1]:
                tokens = block(tokens)
        out[size] = (x, tokens.transpose(0, 1), visual)
    return out


@pytest.mark.parametrize("mode", ["sclip", "clearclip", "naclip"])
@pytest.mark.parametrize("size", SIZES)
def test_dense_mode_matches_official_formula(vit_b16, before_last_block, mode, size):
    x, tokens, visual = before_last_block[size]
    grid = (size[0] // 16, size[1] // 16)
    with torch.no_grad():
        out = official_last_block(mode, visual.transformer.resblocks[-1], tokens, grid).transpose(0, 1)
        expected = (visual.ln_post(out)[:, 1:] @ visual.proj).transpose(1, 2).reshape(2, -1, *grid)
    features = vit_b16.encode_dense(x, mode).features
    error = ((features - expected).norm() / expected.norm()).item()
    assert error < 1e-5, f"{mode} at {size}: relative error {error:.2e}"


def test_naclip_bias_is_the_gaussian_of_grid_distance():
    from maskclip.backbone import neighbourhood_bias

    torch.testing.assert_close(neighbourhood_bias((5, 7), 5.0, torch.device("cpu")), naclip_omega(5, 7))


def test_successor_modes_need_a_vit(tiny_rn):
    for mode in ("sclip", "clearclip", "naclip"):
        with pytest.raises(UnsupportedModelError, match="needs a ViT"):
            maskclip.load("maskclip-tiny-rn", pretrained=None, dense_mode=mode)
        with pytest.raises(UnsupportedModelError, match="needs a ViT"):
            tiny_rn.segment(np.zeros((32, 32, 3), np.uint8), ["a"], dense_mode=mode)


def test_features_are_cached_per_mode_with_the_mode_parameters(tiny_vit):
    image = np.random.default_rng(3).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    signatures = {m: tiny_vit.signature_for(m)["dense_mode"] for m in maskclip.DENSE_MODE_NAMES}
    assert signatures["naclip"] == {"name": "naclip", "sigma": 5.0}
    assert len({str(s) for s in signatures.values()}) == 4
    runs = tiny_vit.stats["image_encoder_runs"]
    a = tiny_vit.segment(image, ["a", "b"], dense_mode="naclip")
    after_naclip = tiny_vit.stats["image_encoder_runs"]
    assert after_naclip > runs
    tiny_vit.segment(image, ["a", "b"], dense_mode="maskclip")
    b = tiny_vit.segment(image, ["a", "b"], dense_mode="naclip")  # back: from the cache
    assert tiny_vit.is_ready(image, ["a", "b"], dense_mode="naclip")
    assert not tiny_vit.is_ready(image, ["a", "b"], dense_mode="sclip")
    np.testing.assert_array_equal(a.probs, b.probs)
    assert tiny_vit.stats["image_encoder_runs"] == after_naclip + 1  # only the maskclip encode in between


def test_every_mode_smooths_with_the_last_block_keys(tiny_vit):
    """Keys for KS are the last block's k through out_proj in every mode (MaskCLIP's official choice)."""
    x = torch.randn(2, 3, 64, 96)
    keys = tiny_vit.encode_dense(x, "maskclip").keys
    for mode in ("sclip", "clearclip", "naclip"):
        torch.testing.assert_close(tiny_vit.encode_dense(x, mode).keys, keys)
