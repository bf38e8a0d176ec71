"""The exact checks of docs/architecture.md ("The method, in short"): dense features against open_clip's own modules, for any weights."""
from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

import maskclip
from maskclip.backbone import ViTDense, dense_encoder
from maskclip.errors import UnsupportedModelError


def reference_vit(clip_model, x):
    """open_clip's own ViT at the input's size, last block run with an attention mask that lets each token
    attend only to itself, then ln_post and proj on the patch tokens."""
    visual = clip_model.visual
    height, width = x.shape[-2:]
    if (height, width) != tuple(visual.image_size):
        # open_clip's own model at this resolution: its loader resizes the positional embedding.
        resized = open_clip.create_model(clip_model._maskclip_name, pretrained=None,
                                         force_image_size=(height, width))
        state = clip_model.state_dict()
        open_clip.model.resize_pos_embed(state, resized)
        resized.load_state_dict(state)
        visual = resized.visual.eval()
    tokens = visual._embeds(x)
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        tokens = block(tokens)
    length = tokens.shape[1]
    self_only = torch.full((length, length), float("-inf"))
    self_only.fill_diagonal_(0.0)
    tokens = blocks[-1](tokens, attn_mask=self_only)
    features = visual.ln_post(tokens)[:, 1:] @ visual.proj
    gh, gw = height // visual.patch_size[0], width // visual.patch_size[1]
    return features.transpose(1, 2).reshape(x.shape[0], -1, gh, gw)


def reference_resnet(clip_model, x):
    """The attention pool's own v_proj then c_proj, as 1x1 convolutions over the last stage's output."""
    visual = clip_model.visual
    stage4 = visual.forward_intermediates(x, intermediates_only=True)["image_intermediates"][-1]
    pool = visual.attnpool
    v = F.conv2d(stage4, pool.v_proj.weight[:, :, None, None], pool.v_proj.bias)
    features = F.conv2d(v, pool.c_proj.weight[:, :, None, None], pool.c_proj.bias)
    keys = F.conv2d(stage4, pool.k_proj.weight[:, :, None, None], pool.k_proj.bias)
    return features, keys


def _random_model(name):
    torch.manual_seed(1)
    model = maskclip.load(name, pretrained=None, device="cpu")
    model.clip._maskclip_name = name
    return model


@pytest.fixture(scope="module")
def vit_b16():
    return _random_model("ViT-B-16")


@pytest.mark.parametrize("name", ["maskclip-tiny-vit", "ViT-B-16"])
@pytest.mark.parametrize("size", [(224, 224), (160, 288), (320, 240)])
def test_vit_dense_features_equal_self_attention_only_last_block(name, size, vit_b16):
    model = vit_b16 if name == "ViT-B-16" else _random_model(name)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected = reference_vit(model.clip, x)
    dense = model.encode_dense(x)
    assert dense.features.shape == expected.shape
    torch.testing.assert_close(dense.features, expected, rtol=1e-4, atol=1e-4)
    width = model.clip.visual.transformer.width
    assert dense.keys.shape == (2, width, size[0] // 16, size[1] // 16)


def test_vit_keys_are_last_block_keys_through_out_proj():
    model = _random_model("maskclip-tiny-vit")
    visual = model.clip.visual
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        tokens = visual._embeds(x)
        for block in visual.transformer.resblocks[:-1]:
            tokens = block(tokens)
        last = visual.transformer.resblocks[-1]
        width = last.attn.embed_dim
        k = F.linear(last.ln_1(tokens), last.attn.in_proj_weight[width:2 * width],
                     last.attn.in_proj_bias[width:2 * width])
        expected = last.attn.out_proj(k)[:, 1:].transpose(1, 2).reshape(1, width, 14, 14)
    torch.testing.assert_close(model.encode_dense(x).keys, expected, rtol=1e-4, atol=1e-5)


def test_positional_embedding_used_as_is_at_pretraining_size_and_interpolated_otherwise():
    model = _random_model("maskclip-tiny-vit")
    encoder = dense_encoder(model.clip)
    assert isinstance(encoder, ViTDense)
    native = model.clip.visual.positional_embedding
    assert encoder.positional_embedding((14, 14)) is native
    other = encoder.positional_embedding((10, 18))
    assert other.shape == (1 + 10 * 18, native.shape[1])
    torch.testing.assert_close(other[0], native[0])  # the class position is kept


def test_padding_to_patch_multiple_gives_ceil_grid():
    model = _random_model("maskclip-tiny-vit")
    dense = model.encode_dense(torch.randn(1, 3, 100, 37))
    assert dense.features.shape[-2:] == (7, 3)
    tiny = model.encode_dense(torch.randn(1, 3, 5, 5))  # smaller than one patch
    assert tiny.features.shape[-2:] == (1, 1)


@pytest.mark.parametrize("name", ["maskclip-tiny-rn", "RN50"])
@pytest.mark.parametrize("size", [(224, 224), (192, 320)])
def test_resnet_dense_features_equal_attention_pool_value_path(name, size):
    model = _random_model(name)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        features, keys = reference_resnet(model.clip, x)
    dense = model.encode_dense(x)
    torch.testing.assert_close(dense.features, features, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dense.keys, keys, rtol=1e-4, atol=1e-4)
    assert dense.features.shape[-2:] == (size[0] // 32, size[1] // 32)


def test_unsupported_architectures_get_clear_errors():
    with pytest.raises(UnsupportedModelError, match="unknown model"):
        maskclip.load("not-a-model", pretrained=None)
    custom = open_clip.CLIP(embed_dim=32, vision_cfg={"image_size": 32, "layers": 1, "width": 32, "patch_size": 16,
                                                      "head_width": 16, "qk_norm": True},
                            text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                                      "layers": 1})
    with pytest.raises(UnsupportedModelError, match="standard ViT blocks"):
        dense_encoder(custom)
    with pytest.raises(UnsupportedModelError, match="dense mode"):
        maskclip.load("maskclip-tiny-vit", pretrained=None, dense_mode="nope")
