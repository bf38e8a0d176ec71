"""Undo/redo of the annotator's edits: labels and verified mask change together, one step per edit.

napari's Labels layer keeps its own undo history of pixel values only; undoing a saved stroke with it
would leave the stroke's pixels verified (or mark the undone pixels verified at the next save). The
annotator therefore records each edit (a stroke, a fill, Reviewed ✓, Class ✓) here as the changed pixels'
values and verified flags before and after, and undo/redo restore both. Only changed pixels are kept, so
a step on a 12-Mpx image costs what the stroke touched. No Qt here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_STEPS = 100


@dataclass
class Step:
    index: np.ndarray  # flat pixel indices the edit touched
    values_before: np.ndarray
    values_after: np.ndarray
    verified_before: np.ndarray
    verified_after: np.ndarray


class EditHistory:
    """Undo and redo stacks of Steps for one image."""

    def __init__(self, max_steps: int = MAX_STEPS):
        self.max_steps = max_steps
        self._undo: list[Step] = []
        self._redo: list[Step] = []

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def record(self, values_before: np.ndarray, verified_before: np.ndarray,
               values_after: np.ndarray, verified_after: np.ndarray, changed: np.ndarray | None = None) -> bool:
        """Record the edit that turned (values, verified) before into after; False when nothing changed.
        changed: the mask of every pixel that differs, when the caller has it (saves a pass on 12 Mpx)."""
        if changed is None:
            changed = (values_before != values_after) | (verified_before != verified_after)
        index = np.flatnonzero(changed)
        if index.size == 0:
            return False
        self._undo.append(Step(index, values_before.ravel()[index], values_after.ravel()[index],
                               verified_before.ravel()[index], verified_after.ravel()[index]))
        del self._undo[:-self.max_steps]
        self._redo.clear()
        return True

    def undo(self, values: np.ndarray, verified: np.ndarray) -> bool:
        """Put the last step's 'before' into values and verified (in place); False when there is none."""
        if not self._undo:
            return False
        step = self._undo.pop()
        np.put(values, step.index, step.values_before)
        np.put(verified, step.index, step.verified_before)
        self._redo.append(step)
        return True

    def redo(self, values: np.ndarray, verified: np.ndarray) -> bool:
        """Re-apply the last undone step (in place); False when there is none."""
        if not self._redo:
            return False
        step = self._redo.pop()
        np.put(values, step.index, step.values_after)
        np.put(verified, step.index, step.verified_after)
        self._undo.append(step)
        return True
