"""SegmentOptions: per-mode defaults and the successors' protocol options (temperature, background threshold,
synonyms by max, official KS, softmax-1 scale fusion, window-normalised averaging, PAMR)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import maskclip
from maskclip.errors import MaskCLIPError
from maskclip.geometry import upsample_accumulate
from maskclip.options import MODE_DEFAULTS, SegmentOptions
from maskclip.scoring import key_smooth_official


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = np.zeros((60, 90, 3), np.uint8)
    img[:30] = (200, 30, 30)
    img[30:, :40] = (20, 180, 40)
    return np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)


def test_each_mode_defaults_come_from_the_table(tiny_vit, image):
    for mode, d in MODE_DEFAULTS.items():
        _, o = tiny_vit.options(mode)
        assert (o.temperature, o.key_smoothing, o.prompt_denoising, o.window, o.stride, o.window_norm) == \
            (d.temperature, d.key_smoothing, d.prompt_denoising, d.window, d.stride, d.window_norm)
    implicit = tiny_vit.segment(image, ["a", "b"], dense_mode="sclip")
    explicit = tiny_vit.segment(image, ["a", "b"], dense_mode="sclip", temperature=40.0, key_smoothing=False,
                                prompt_denoising=False, window=224, stride=112, window_norm=True)
    np.testing.assert_array_equal(implicit.probs, explicit.probs)
    hotter = tiny_vit.segment(image, ["a", "b"], dense_mode="sclip", temperature=100.0)
    assert not np.allclose(implicit.probs, hotter.probs)


def _manual_probs(model, image, rows, temperature, groups=None):
    """Cosine scores -> softmax per patch -> max per group -> bilinear upsampling; single scale, no KS/PD."""
    maps = model.image_features(image, (336,))[0]
    text = model.encode_text(rows)
    scores = text @ F.normalize(maps["features"].flatten(1), dim=0)
    probs = torch.softmax(temperature * scores, dim=0)
    groups = groups or [[r] for r in range(len(rows))]
    merged = torch.stack([probs[g].amax(0) for g in groups]).view(len(groups), *maps["features"].shape[1:])
    out = torch.zeros(len(groups), *image.shape[:2])
    upsample_accumulate(out, merged)
    return out.numpy()


def test_synonyms_merged_by_max_of_their_probabilities(tiny_vit, image):
    seg = tiny_vit.segment(image, [["car", "automobile"], "road"], background=(), key_smoothing=False,
                           prompt_denoising=False, synonyms="max")
    expected = _manual_probs(tiny_vit, image, ["car", "automobile", "road"], 100.0, groups=[[0, 1], [2]])
    np.testing.assert_allclose(seg.probs, expected, atol=1e-5)
    averaged = tiny_vit.segment(image, [["car", "automobile"], "road"], background=(), key_smoothing=False,
                                prompt_denoising=False)
    assert not np.allclose(seg.probs, averaged.probs)


def test_softmax1_scale_fusion_is_the_official_aug_test(tiny_vit, image):
    seg = tiny_vit.segment(image, ["a", "b", "c"], background=(), key_smoothing=False, prompt_denoising=False,
                           scale_fusion="softmax1")
    np.testing.assert_allclose(seg.probs, _manual_probs(tiny_vit, image, ["a", "b", "c"], 1.0), atol=1e-5)


def test_background_threshold(tiny_vit, image):
    plain = tiny_vit.segment(image, ["a", "b", "c"], background=(), key_smoothing=False, prompt_denoising=False)
    t = float(np.quantile(plain.probs.max(0), 0.5))
    seg = tiny_vit.segment(image, ["a", "b", "c"], background=(), key_smoothing=False, prompt_denoising=False,
                           bg_threshold=t)
    assert seg.class_names == ["a", "b", "c", "background"] and seg.background_index == 3
    unsure = plain.probs.max(0) < t
    assert 0 < unsure.sum() < unsure.size
    np.testing.assert_array_equal(seg.labels[unsure], 3)
    np.testing.assert_array_equal(seg.labels[~unsure], plain.labels[~unsure])
    with_prompts = tiny_vit.segment(image, ["a", "b"], background=("sky",), bg_threshold=1.0)
    assert (with_prompts.labels == with_prompts.background_index).all()  # nothing reaches probability 1


def test_window_norm_averages_unit_window_features(tiny_vit):
    image = np.random.default_rng(1).integers(0, 255, (32, 64, 3), dtype=np.uint8)
    maps = tiny_vit.image_features(image, scales=(32,), window=48, stride=16, window_norm=True)[0]
    x = tiny_vit.normalize(torch.from_numpy(image / np.float32(255)).permute(2, 0, 1)[None].float())
    windows = [F.normalize(tiny_vit.encode_dense(x[..., left:left + 48]).features[0], dim=0) for left in (0, 16)]
    expected = torch.zeros_like(maps["features"])
    expected[..., :1] = windows[0][..., :1]
    expected[..., 1:3] = (windows[0][..., 1:] + windows[1][..., :2]) / 2
    expected[..., 3:] = windows[1][..., 2:]
    torch.testing.assert_close(maps["features"], expected, rtol=1e-4, atol=1e-5)


def test_official_key_smoothing_normalises_keys_over_tokens_and_keeps_confident_patches():
    probs = torch.tensor([[0.9, 0.6, 0.2], [0.1, 0.4, 0.8]])
    keys = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]])  # [C=2, N=3]
    k = keys / keys.norm(dim=1, keepdim=True)
    smoothed = ((k.T @ k) @ probs.T).T
    out = key_smooth_official(probs, keys, threshold=0.85)
    torch.testing.assert_close(out[:, 0], probs[:, 0])  # 0.9 >= 0.85: kept
    torch.testing.assert_close(out[:, 1:], smoothed[:, 1:] / smoothed[:, 1:].sum(0))


def test_invalid_options_are_clear_errors(tiny_vit, image):
    for kwargs, match in [({"temperature": 0}, "temperature"), ({"bg_threshold": 2}, "background threshold"),
                          ({"synonyms": "min"}, "synonyms"), ({"ks_variant": "x"}, "ks_variant"),
                          ({"scale_fusion": "x"}, "scale_fusion"), ({"nope": 1}, "unknown segmentation option")]:
        with pytest.raises(MaskCLIPError, match=match):
            tiny_vit.segment(image, ["a"], **kwargs)
    with pytest.raises(MaskCLIPError, match="unknown dense mode"):
        tiny_vit.segment(image, ["a"], dense_mode="nope")
    assert SegmentOptions.from_mapping({"pamr_dilations": [4, 8]}).pamr_dilations == (4, 8)


def test_pamr_option_runs_at_the_scaled_size(tiny_vit, image):
    seg = tiny_vit.segment(image, ["a", "b", "c"], background=(), pamr=True, pamr_steps=2, pamr_dilations=(1, 2))
    assert seg.probs.shape == (3, 60, 90)
    np.testing.assert_allclose(seg.probs.sum(0), 1.0, atol=1e-4)  # a convex combination keeps sums
