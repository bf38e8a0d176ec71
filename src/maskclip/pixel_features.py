"""Cheap pixel-level features per patch for the learner: colour and edge strength at several scales (the
intensity and edge filters of ilastik's pixel classification), averaged over each patch of a feature grid.
CLIP's patch features carry what the text means; these carry the colour and edges a user's corrections show,
which is what an ilastik-style random forest learns from, and all a learner has where CLIP knows nothing.

Plain torch (no scikit-image in the core): the image is resized to PIXELS_PER_PATCH pixels per patch side
(cost independent of the image's size), blurred with Gaussians of SIGMAS, and each blurred image gives its
colour and its Sobel gradient magnitude. Cached per image content and grid (a redraw reuses them).
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

PIXELS_PER_PATCH = 8
SIGMAS = (1.0, 2.0, 4.0, 8.0)
CACHE_SIZE = 64

_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_lock = threading.Lock()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [1, C, H, W] (edges replicated)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.device)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _edges(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude per channel of [1, C, H, W]."""
    c = x.shape[1]
    sx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=x.dtype, device=x.device) / 8
    kernel = torch.stack([sx, sx.T])[:, None].repeat(c, 1, 1, 1)  # [2C, 1, 3, 3]
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=c).view(1, c, 2, *x.shape[-2:])
    return g.pow(2).sum(2).sqrt()


def patch_pixel_features(image: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """[P, h, w] (P = 6 per sigma: colour and edge strength of R, G, B) averaged over each cell of the grid."""
    from .images import to_rgb_float
    from .model import image_digest

    grid = tuple(int(g) for g in grid)
    key = (image_digest(image), grid)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    rgb = torch.from_numpy(to_rgb_float(image)).permute(2, 0, 1)[None].float()
    size = (grid[0] * PIXELS_PER_PATCH, grid[1] * PIXELS_PER_PATCH)
    small = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=size[0] < rgb.shape[-2])
    maps = []
    for sigma in SIGMAS:
        blurred = _blur(small, sigma)
        maps += [blurred, _edges(blurred)]
    pooled = F.adaptive_avg_pool2d(torch.cat(maps, dim=1), grid)[0]
    with _lock:
        _cache[key] = pooled
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return pooled
