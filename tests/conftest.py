"""Shared fixtures: tiny random-weight CLIP models (real open_clip architectures) and the shared data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

try:  # torch's stack with triton hidden (as the annotator's model-loading worker imports it), before any
    # GUI test makes an OpenGL context: tests that import torchvision directly then cannot load triton
    from maskclip_napari._torch_env import import_torch_stack
except ImportError:  # pragma: no cover  (core-only install)
    pass
else:
    import_torch_stack()

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; the calling test is skipped when it is absent (a user's fresh clone)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def two_tone(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Red top half, blue bottom half, slightly noisy: an image a student learns in a few iterations."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    img[: height // 2] = (200, 40, 40)
    img[height // 2:] = (40, 40, 200)
    return np.clip(img.astype(int) + rng.integers(-15, 16, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_vit():
    import maskclip

    torch.manual_seed(0)
    return maskclip.load("maskclip-tiny-vit", pretrained=None, device="cpu")


@pytest.fixture(scope="session")
def tiny_rn():
    import maskclip

    torch.manual_seed(0)
    return maskclip.load("maskclip-tiny-rn", pretrained=None, device="cpu")
