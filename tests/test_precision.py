"""Batched sliding windows and mixed precision (issue 18 item 4): the CPU keeps its float32 results exactly;
on CUDA the encoder autocasts (checked only where a GPU is present)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import maskclip
from maskclip.errors import MaskCLIPError
from maskclip.precision import autocast_dtype

CLASSES = ["road", "car", "sky"]


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(3).integers(0, 256, (100, 140, 3), dtype=np.uint8)


def _model(device="cpu", **kw):
    torch.manual_seed(0)
    return maskclip.load("maskclip-tiny-vit", pretrained=None, device=device, **kw)


def test_batched_windows_equal_one_window_per_pass(image):
    one, batched = _model(window_batch=1), _model(window_batch=5)
    kwargs = dict(scales=(96,), window=48, stride=32)  # sides and steps: multiples of the 16-px patch
    a, b = one.image_features(image, **kwargs)[0], batched.image_features(image, **kwargs)[0]
    assert a["features"].shape[-2:] == (6, 8)  # 96 x 128 px: 3 rows x 4 columns of 48-px windows
    torch.testing.assert_close(b["features"], a["features"], rtol=0, atol=1e-6)
    torch.testing.assert_close(b["keys"], a["keys"], rtol=0, atol=1e-6)
    assert batched.stats["image_encoder_runs"] == 3 and one.stats["image_encoder_runs"] == 12
    np.testing.assert_array_equal(batched.segment(image, CLASSES, background=[], **kwargs).labels,
                                  one.segment(image, CLASSES, background=[], **kwargs).labels)


def test_the_cpu_stays_float32_and_keeps_its_cache_signature():
    model = _model()
    assert model.autocast_dtype is None and model.window_batch == 1
    assert "precision" not in model.signature  # features cached before this change stay valid
    assert autocast_dtype(torch.device("cpu"), "float32") is None
    with pytest.raises(MaskCLIPError, match="needs a CUDA GPU"):
        _model(precision="bfloat16")
    with pytest.raises(MaskCLIPError, match="precision must be one of"):
        _model(precision="half")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_autocasts_and_agrees_with_float32(image):
    fast, exact = _model("cuda"), _model("cuda", precision="float32")
    assert fast.autocast_dtype in (torch.bfloat16, torch.float16) and exact.autocast_dtype is None
    assert fast.signature["precision"] != "float32" and "precision" not in exact.signature
    kwargs = dict(scales=(96,), window=48, stride=32, background=[])
    a, b = fast.segment(image, CLASSES, **kwargs), exact.segment(image, CLASSES, **kwargs)
    assert a.probs.dtype == np.float32
    assert (a.labels == b.labels).mean() > 0.9
