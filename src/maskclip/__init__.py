"""maskclip: MaskCLIP dense labels from CLIP (headless core of maskclip-napari).

Public API: `load`, `MaskCLIP`, `DenseFeatures`, `Segmentation`, `DEFAULT_BACKGROUND`, `DEFAULT_SCALES`.
"""
__version__ = "0.1.0"

from .errors import MaskCLIPError  # noqa: E402
from .model import (  # noqa: E402
    DEFAULT_BACKGROUND,
    DEFAULT_SCALES,
    DenseFeatures,
    MaskCLIP,
    Segmentation,
    load,
)

__all__ = [
    "__version__", "load", "MaskCLIP", "DenseFeatures", "Segmentation", "MaskCLIPError",
    "DEFAULT_BACKGROUND", "DEFAULT_SCALES",
]
