"""Shared fixtures: tiny random-weight CLIP models (real open_clip architectures) and the shared data."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; the calling test is skipped when it is absent (a user's fresh clone)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


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
