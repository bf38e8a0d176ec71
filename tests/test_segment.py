"""The segmentation pipeline: caching, scales, windows, background, toggles and odd inputs."""
import numpy as np
import pytest
import torch

import maskclip
from maskclip.errors import MaskCLIPError

CLASSES = ["road", ["car", "automobile"], "person"]


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = np.zeros((90, 130, 3), np.uint8)
    img[:45] = (200, 30, 30)
    img[45:, :60] = (20, 180, 40)
    return np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)


def test_output_is_full_resolution_and_labels_are_the_argmax(tiny_vit, image):
    seg = tiny_vit.segment(image, CLASSES)
    assert seg.probs.shape == (4, 90, 130) and seg.probs.dtype == np.float32
    assert seg.labels.shape == (90, 130) and seg.labels.dtype == np.int32
    assert seg.class_names == ["road", "car", "person", "background"] and seg.background_index == 3
    np.testing.assert_array_equal(seg.labels, seg.probs.argmax(0))
    assert (seg.probs >= 0).all() and (seg.probs <= 1 + 1e-5).all()


def test_reprompting_and_toggles_reuse_the_image_features(tiny_vit, image):
    tiny_vit.segment(image, CLASSES)
    runs = tiny_vit.stats["image_encoder_runs"]
    a = tiny_vit.segment(image, CLASSES, key_smoothing=False, prompt_denoising=False)
    b = tiny_vit.segment(image, CLASSES, key_smoothing=True, prompt_denoising=True, pd_threshold=0.3)
    tiny_vit.segment(image, ["tree", "sky", "house"])
    assert tiny_vit.stats["image_encoder_runs"] == runs
    assert not np.allclose(a.probs, b.probs)  # the toggles do something
    tiny_vit.segment(image[::-1].copy(), CLASSES)  # new content -> one new encoder run
    assert tiny_vit.stats["image_encoder_runs"] == runs + 1


def test_multi_scale_is_the_average_of_single_scales(tiny_vit, image):
    both = tiny_vit.segment(image, CLASSES, scales=(224, 336))
    one = tiny_vit.segment(image, CLASSES, scales=(224,))
    two = tiny_vit.segment(image, CLASSES, scales=(336,))
    np.testing.assert_allclose(both.probs, (one.probs + two.probs) / 2, atol=1e-5)


def test_sliding_windows_stitch_patch_grids(tiny_vit):
    """Two side-by-side windows without overlap give exactly the two halves' dense features."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)
    maps = tiny_vit.image_features(image, scales=(32,), window=32, stride=32)[0]
    x = tiny_vit.normalize(torch.from_numpy(image / np.float32(255)).permute(2, 0, 1)[None].float())
    left, right = tiny_vit.encode_dense(x[..., :32]), tiny_vit.encode_dense(x[..., 32:])
    expected = torch.cat([left.features[0], right.features[0]], dim=-1)
    torch.testing.assert_close(maps["features"], expected, rtol=1e-4, atol=1e-4)
    # overlapping windows average where they overlap; the grid still covers the whole image
    maps = tiny_vit.image_features(image, scales=(32,), window=48, stride=16)[0]
    assert maps["features"].shape[-2:] == (2, 4)


def test_background_prompts_merge_into_one_label(tiny_vit, image):
    seg = tiny_vit.segment(image, ["road", "car"], background=["sky", "tree"])
    assert seg.class_names == ["road", "car", "background"]
    # The merged background is the max over its prompts, so labels equal the per-prompt argmax mapped to
    # "background". Checked where upsampling is the identity: a 21x28 image at scale 336 has a 21x28 grid.
    small = image[:21, :28].copy()
    seg = tiny_vit.segment(small, ["road", "car"], background=["sky", "tree"])
    plain = tiny_vit.segment(small, ["road", "car", "sky", "tree"], background=())
    mapped = np.minimum(plain.labels, 2)
    np.testing.assert_array_equal(seg.labels, mapped)
    # a user class named "background" absorbs the prompts; prompts equal to a user class are dropped
    seg = tiny_vit.segment(image, ["background", "sky"], background=["sky", "tree"])
    assert seg.class_names == ["background", "sky"] and seg.background_index == 0
    assert tiny_vit.segment(image, ["road"], background=()).class_names == ["road"]


@pytest.mark.parametrize("make", [
    lambda im: im.mean(2).astype(np.uint8),  # grey
    lambda im: im[..., :1],  # HxWx1
    lambda im: np.dstack([im, np.full(im.shape[:2], 255, np.uint8)]),  # RGBA
    lambda im: im.astype(np.uint16) * 257,  # 16-bit
    lambda im: im.astype(np.float32) / 255,  # float in [0, 1]
    lambda im: im.astype(np.float64) * 4.0,  # float out of range: min-max normalised
])
def test_image_kinds(tiny_vit, image, make):
    seg = tiny_vit.segment(make(image), CLASSES)
    assert seg.probs.shape == (4, 90, 130) and np.isfinite(seg.probs).all()


def test_equivalent_encodings_give_the_same_result(tiny_vit, image):
    ref = tiny_vit.segment(image, CLASSES)
    rgba = tiny_vit.segment(np.dstack([image, np.zeros(image.shape[:2], np.uint8)]), CLASSES)
    wide = tiny_vit.segment(image.astype(np.uint16) * 257, CLASSES)
    np.testing.assert_allclose(rgba.probs, ref.probs, atol=1e-5)
    np.testing.assert_allclose(wide.probs, ref.probs, atol=1e-5)


def test_images_smaller_than_one_patch(tiny_vit, tiny_rn):
    tiny = np.full((5, 7, 3), 128, np.uint8)
    for model in (tiny_vit, tiny_rn):
        seg = model.segment(tiny, CLASSES)
        assert seg.labels.shape == (5, 7)
    assert tiny_vit.segment(np.zeros((1, 1), np.uint8), ["a", "b"]).labels.shape == (1, 1)


def test_resnet_pipeline(tiny_rn, image):
    seg = tiny_rn.segment(image, CLASSES, scales=(224, 320))
    assert seg.probs.shape == (4, 90, 130)


@pytest.mark.parametrize("kwargs,match", [
    ({"classes": []}, "no classes"),
    ({"classes": ["a", "A"]}, "duplicate"),
    ({"classes": ["a"], "pd_threshold": 1.5}, "threshold"),
    ({"classes": ["a"], "scales": ()}, "scales"),
    ({"classes": ["a"], "background": ["", "sky"]}, "blank"),
])
def test_bad_arguments_raise_clear_errors(tiny_vit, image, kwargs, match):
    with pytest.raises(MaskCLIPError, match=match):
        tiny_vit.segment(image, **kwargs)


def test_unsupported_image_shapes(tiny_vit):
    with pytest.raises(MaskCLIPError):
        tiny_vit.segment(np.zeros((4, 4, 5), np.uint8), ["a"])
    with pytest.raises(MaskCLIPError):
        tiny_vit.segment(np.zeros(10, np.uint8), ["a"])


def test_default_settings_are_documented_constants():
    assert maskclip.DEFAULT_BACKGROUND == ("building", "ground", "grass", "tree", "sky")
    assert maskclip.DEFAULT_SCALES == (336,)


def test_is_ready_tells_when_segment_needs_no_encoder(tiny_vit):
    image = np.random.default_rng(5).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    assert not tiny_vit.is_ready(image, ["road"], background=())
    tiny_vit.segment(image, ["road"], background=())
    assert tiny_vit.is_ready(image, ["road"], background=())
    assert not tiny_vit.is_ready(image, ["road", "never seen before"], background=())  # text missing
    assert not tiny_vit.is_ready(image, ["road"], background=(), scales=(224,))  # features missing
    # the same prompt layout as segment: a background prompt naming a class is dropped, not embedded
    assert tiny_vit.is_ready(image, ["road"], background=("Road",))
    assert not tiny_vit.is_ready(image, [], background=())  # invalid: segment reports it
