"""PAMR: pixel-adaptive mask refinement (Araslanov & Roth, "Single-Stage Semantic Segmentation from Image
Labels", CVPR 2020), the post-processing NACLIP and its peers report results with.

Each step replaces every pixel's class map values by a weighted mean over its 8 neighbours at each
dilation: alpha_ij = softmax_j(-mean_c |I_i,c - I_j,c| / (0.1 * sigma_i,c)), where sigma_i,c is the
standard deviation of channel c over the pixel's 3x3 neighbourhoods (centre included, all dilations).
Borders replicate the edge pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _shifts(x: torch.Tensor, offsets, dilations):
    """x [C, H, W] read at each offset * dilation (edges replicated): one [C, H, W] view per neighbour."""
    _, height, width = x.shape
    for d in dilations:
        padded = F.pad(x[None], (d, d, d, d), mode="replicate")[0]
        for dy, dx in offsets:
            yield padded[:, d + dy * d:d + dy * d + height, d + dx * d:d + dx * d + width]


def _shifted(x: torch.Tensor, offsets, dilations) -> torch.Tensor:
    """[C, P, H, W], P = offsets x dilations."""
    return torch.stack(list(_shifts(x, offsets, dilations)), dim=1)


def pamr_affinity(image: torch.Tensor, dilations=(8, 16)) -> torch.Tensor:
    """[P, H, W] weights of each pixel's neighbours (summing to 1) from an image [C, H, W]."""
    image = image.float()
    sigma = _shifted(image, NEIGHBOURS + [(0, 0)], dilations).std(dim=1, keepdim=True)  # [C, 1, H, W]
    distance = (image[:, None] - _shifted(image, NEIGHBOURS, dilations)).abs()  # [C, P, H, W]
    return torch.softmax((-distance / (1e-8 + 0.1 * sigma)).mean(dim=0), dim=0)


def pamr(image: torch.Tensor, maps: torch.Tensor, steps: int = 10, dilations=(8, 16)) -> torch.Tensor:
    """Refine class maps [K, H, W] along the edges of `image` [C, H, W] (same size)."""
    if image.shape[-2:] != maps.shape[-2:]:
        raise ValueError(f"PAMR needs the image and the maps at one size, got {tuple(image.shape)} and "
                         f"{tuple(maps.shape)}")
    weights = pamr_affinity(image, dilations)
    for _ in range(steps):  # one neighbour at a time: memory stays at a few copies of the maps
        refined = torch.zeros_like(maps)
        for weight, neighbour in zip(weights, _shifts(maps, NEIGHBOURS, dilations)):
            refined += weight * neighbour
        maps = refined
    return maps
