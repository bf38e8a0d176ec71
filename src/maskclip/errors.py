"""Errors a user can act on. The CLI and the napari widget show their message instead of a traceback."""


class MaskCLIPError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class WeightsUnavailableError(MaskCLIPError):
    """CLIP weights could not be downloaded or read."""


class UnsupportedModelError(MaskCLIPError):
    """The open_clip architecture has no dense (per-patch) path here."""


class ImageReadError(MaskCLIPError):
    """An image file is missing, unreadable or corrupt."""
