"""Cheap pixel-level features per patch for the learner: ilastik's filters (scikit-image's
`multiscale_basic_features`: intensity, edges, texture of each colour channel at sigma 1-16) averaged over each
patch of a feature grid. CLIP's patch features carry what the text means; these carry the colour and texture a
user's corrections show (what an ilastik-style random forest learns from), for the classes the user taught.

The filters run on the image resized to PIXELS_PER_PATCH pixels per patch side (cost independent of the
image's size), and are cached per image content and grid (a redraw reuses them).
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

PIXELS_PER_PATCH = 8
CACHE_SIZE = 64

_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_lock = threading.Lock()


def patch_pixel_features(image: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """[P, h, w]: the filters of `image` (HxW or HxWxC) averaged over each cell of the h x w grid."""
    from .images import to_rgb_float
    from .model import image_digest

    key = (image_digest(image), tuple(grid))
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    from skimage.feature import multiscale_basic_features

    rgb = torch.from_numpy(to_rgb_float(image)).permute(2, 0, 1)[None]
    size = (grid[0] * PIXELS_PER_PATCH, grid[1] * PIXELS_PER_PATCH)
    small = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False,
                          antialias=size[0] < rgb.shape[-2])[0].permute(1, 2, 0).numpy()
    filters = multiscale_basic_features(small, channel_axis=-1, sigma_min=1, sigma_max=16)
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(np.ascontiguousarray(filters, np.float32)).permute(2, 0, 1),
                                   tuple(grid))
    with _lock:
        _cache[key] = pooled
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return pooled
