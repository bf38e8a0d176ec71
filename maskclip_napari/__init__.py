"""maskclip-napari: the napari plugin (MaskCLIP Annotator widget, reader, writer, sample data).

Importing torchvision makes torch try `import triton`. Triton's native library carries its own LLVM, and
loading it after napari has created an OpenGL context on Mesa (llvmpipe, radeonsi, ...: the same LLVM
symbols, already loaded) crashes the process with a segmentation fault. The annotator never compiles
kernels (inference only; MaskCLIP+ training runs in its own process), so when triton has not been loaded
yet this process treats it as absent: torch then simply reports that triton is unavailable.
"""
import sys

if "triton" not in sys.modules:
    sys.modules["triton"] = None  # `import triton` raises ImportError, which torch handles
