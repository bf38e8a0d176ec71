"""Importing torch's model stack inside napari without loading triton (scoped, nothing left behind).

Importing torchvision makes torch ask whether triton is installed (`torch.utils._triton.has_triton_package`,
which imports it). Triton's native library carries its own LLVM, and loading it after napari has created an
OpenGL context on Mesa (llvmpipe, radeonsi, ...: the same LLVM symbols, already loaded) crashes the process
with a segmentation fault. Measured again with torch 2.14.1 / torchvision 0.29.1 / triton 3.8.0 under Xvfb:
`import torchvision` after the first napari canvas still segfaults inside `triton/knobs.py`.

The annotator never compiles kernels (inference only; MaskCLIP+ training runs in its own process). So the
plugin imports torch and torchvision once, in the worker that loads the first model (not at start-up: the
import takes seconds), with triton hidden for the length of that import only: torch caches its answer ("triton unavailable") and the `sys.modules` entry is removed again,
so nothing else in the napari process is affected (another plugin may still import triton itself). When
triton or torchvision is already loaded there is nothing to protect and nothing is done.
"""
from __future__ import annotations

import contextlib
import sys

_MISSING = object()


@contextlib.contextmanager
def triton_hidden():
    """`import triton` raises ImportError inside the block (unless triton is loaded already); restored after."""
    if "triton" in sys.modules:
        yield
        return
    sys.modules["triton"] = None  # ImportError on import, which torch handles
    try:
        yield
    finally:
        if sys.modules.get("triton", _MISSING) is None:
            del sys.modules["triton"]


def import_torch_stack() -> None:
    """Import torch and torchvision with triton hidden (a no-op once torchvision is loaded)."""
    if "torchvision" in sys.modules:
        return
    with triton_hidden():
        import torch  # noqa: F401
        import torch.utils._triton as torch_triton
        import torchvision  # noqa: F401

        torch_triton.has_triton_package()  # cached by torch: later checks do not import triton


def loaded_torch():
    """torch if it is imported completely (by the model-loading worker, or anyone else), else None; never
    imports it. A worker may be in the middle of importing it: a half-initialised module counts as absent."""
    torch = sys.modules.get("torch")
    if torch is None or getattr(getattr(torch, "__spec__", None), "_initializing", False):
        return None
    return torch
