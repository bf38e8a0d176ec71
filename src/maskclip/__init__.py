"""maskclip: MaskCLIP dense labels from CLIP (headless core of maskclip-napari).

Public API: `load`, `MaskCLIP`, `DenseFeatures`, `Segmentation`, `DEFAULT_BACKGROUND`, `DEFAULT_SCALES`,
`SegmentOptions`, `DENSE_MODE_NAMES`.
They are imported on first use, so light modules (images, labels_io, metrics, project) load without torch.
"""
__version__ = "0.1.0"

from .errors import MaskCLIPError  # noqa: E402
from .options import DENSE_MODE_NAMES, SegmentOptions  # noqa: E402

_MODEL_NAMES = ("load", "MaskCLIP", "DenseFeatures", "Segmentation", "DEFAULT_BACKGROUND", "DEFAULT_SCALES")

__all__ = ["__version__", "MaskCLIPError", "SegmentOptions", "DENSE_MODE_NAMES", *_MODEL_NAMES]


def __getattr__(name: str):
    if name in ("DEFAULT_BACKGROUND", "DEFAULT_SCALES"):  # torch-free: maskclip.defaults
        from . import defaults

        return getattr(defaults, name)
    if name in _MODEL_NAMES:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'maskclip' has no attribute {name!r}")
