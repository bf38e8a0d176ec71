"""The widget contribution's entry point (napari.yaml): the annotator widget.

Nothing here imports torch: docking the annotator must not freeze the window for torch's import (~3.5 s
on two CPU cores). The model stack is imported by the worker that loads a model (`_session.ModelSession.load`,
with triton hidden: `_torch_env` says why); tests/test_lazy_imports.py keeps it so.
"""
from ._widget import AnnotatorWidget

__all__ = ["AnnotatorWidget"]
