"""Sizes and resampling: scale selection, sliding-window positions, memory-bounded bilinear upsampling."""
from __future__ import annotations

import torch

MAX_SCALED_SIDE = 4096  # a very elongated image is scaled so its long side stays within this


def scaled_size(height: int, width: int, short_side: int, multiple: int) -> tuple[int, int]:
    """Size with the short side near `short_side`, both sides multiples of `multiple` (at least one)."""
    factor = min(short_side / min(height, width), MAX_SCALED_SIDE / max(height, width))
    snap = lambda side: max(multiple, int(round(side * factor / multiple)) * multiple)  # noqa: E731
    return snap(height), snap(width)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows covering [0, length): every `stride`, the last one flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


def bilinear_matrix(out_size: int, in_size: int, device=None) -> torch.Tensor:
    """[out, in] matrix M such that M @ v equals 1-D bilinear resizing with align_corners=False.

    Resizing a [K, h, w] map is then Ry @ map @ Rx^T, which can be done in row chunks of the output
    (bounded memory for e.g. 4000x3000 outputs) and matches torch.nn.functional.interpolate exactly.
    """
    scale = in_size / out_size
    src = ((torch.arange(out_size, device=device, dtype=torch.float64) + 0.5) * scale - 0.5).clamp_min(0)
    low = src.floor().long().clamp_max(in_size - 1)
    high = (low + 1).clamp_max(in_size - 1)
    frac = (src - low).to(torch.float32)
    matrix = torch.zeros(out_size, in_size, device=device)
    rows = torch.arange(out_size, device=device)
    matrix.index_put_((rows, low), 1 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix


def upsample_accumulate(acc: torch.Tensor, grid: torch.Tensor, weight: float = 1.0,
                        max_chunk_elems: int = 1 << 22) -> None:
    """acc [K, H, W] += weight * bilinear_resize(grid [K, h, w] -> [K, H, W]), in row chunks.

    Two matrix products: along x once for the whole grid ([K, h, W]), then along y one chunk of output rows
    at a time as a single GEMM, so the full-size temporary never exists.
    """
    k, height, width = acc.shape
    h = grid.shape[1]
    ry = bilinear_matrix(height, h, device=grid.device)
    rx = bilinear_matrix(width, grid.shape[2], device=grid.device)
    columns = (grid @ rx.T).permute(1, 0, 2).reshape(h, k * width)  # [h, K*W]
    if weight != 1.0:
        columns = columns * weight
    rows_per_chunk = max(1, min(height, max_chunk_elems // max(1, k * width)))
    for top in range(0, height, rows_per_chunk):
        part = ry[top:top + rows_per_chunk] @ columns  # [n, K*W]
        acc[:, top:top + rows_per_chunk] += part.view(-1, k, width).permute(1, 0, 2).to(acc.device)
