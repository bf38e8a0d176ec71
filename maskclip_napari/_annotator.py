"""The widget contribution's entry point (napari.yaml): torch's stack is imported first without triton
(see `_torch_env`), then the annotator widget itself."""
from ._torch_env import import_torch_stack

import_torch_stack()

from ._widget import AnnotatorWidget  # noqa: E402

__all__ = ["AnnotatorWidget"]
