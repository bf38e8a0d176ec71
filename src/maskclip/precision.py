"""Mixed precision for the forward passes of inference (MaskCLIP's encoder, the student in refine): one rule.

On CUDA, autocast to bfloat16 where the GPU has it (Ampere and later), else float16; the results are cast back
to float32 before anything is scored, smoothed or stored. On the CPU everything stays float32, so CPU results
are exactly those of a run without this module (and tests compare them bit for bit). "float32" turns autocast
off on CUDA too (`--no-amp`). Training has its own (float16 with a gradient scaler, `maskclip.train.loop`).
"""
from __future__ import annotations

import contextlib

import torch

from .errors import MaskCLIPError

PRECISIONS = ("auto", "float32", "bfloat16", "float16")


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The dtype forward passes autocast to on `device` (None: plain float32)."""
    if precision not in PRECISIONS:
        raise MaskCLIPError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if torch.device(device).type != "cuda" or precision == "float32":
        if precision in ("bfloat16", "float16"):
            raise MaskCLIPError(f"{precision} needs a CUDA GPU; on the CPU MaskCLIP runs in float32")
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, precision)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """A context that autocasts to `dtype` on `device` (nothing when dtype is None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def precision_name(dtype: torch.dtype | None) -> str:
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")
