"""The current image's edits, without Qt: what the labels layer was recorded as, the verified mask, the merge
base of the next save, and undo/redo (`_history.EditHistory`).

The annotator widget owns one `EditState` and calls it from its Qt slots; this module needs no display (see
tests/test_edit_state.py). Conventions:

- layer values: napari Labels values (class i as i + 1, 0 = unlabelled); project labels: class indices,
  255 = unlabelled (`to_layer_values` / `from_layer_values` convert);
- `recorded`: the labels layer's values as of the last recorded edit (None while the image is not editable,
  e.g. stale on disk); `verified`: the verified mask, edits included;
- `base`: (project labels, verified) the layer's copy derives from. It is passed as `base=` to
  `Project.set_labels`, so a save takes only this annotator's edits and never reverts what other writers
  committed; `adopt` shows other writers' pixels after a save and folds them into the base.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from maskclip.defaults import UNLABELLED

from ._history import EditHistory

KEPT_HISTORIES = 20  # images whose undo history is kept for the session (the most recently shown)


def to_layer_values(labels: np.ndarray) -> np.ndarray:
    """Project labels (255 = unlabelled) -> Labels-layer values (0 = unlabelled)."""
    labels = np.asarray(labels)
    out = labels.astype(np.uint8) + np.uint8(1)  # 255 wraps to 0
    out[labels == UNLABELLED] = 0
    return out


def from_layer_values(values: np.ndarray, n_classes: int) -> np.ndarray:
    """Labels-layer values -> project labels; values beyond the class list read as unlabelled."""
    values = np.asarray(values)
    if values.dtype == np.uint8:  # the annotator's layers: uint8 arithmetic, 0 - 1 wraps to 255 (12 Mpx: ~10 ms)
        out = values - np.uint8(1)
        if n_classes < UNLABELLED:
            out[values > n_classes] = UNLABELLED
        return out
    out = values.astype(np.int64) - 1
    out[(values == 0) | (values > n_classes)] = UNLABELLED
    return out.astype(np.uint8)


class EditState:
    """One image's edits: recorded layer values, verified mask, merge base, unsaved flag, undo history."""

    def __init__(self):
        self.recorded: np.ndarray | None = None  # the labels layer's values as of the last recorded edit
        self.verified: np.ndarray | None = None  # the current image's verified mask, edits included
        # (project labels, verified) the layer's copy derives from: the merge base of the next save
        self.base: tuple[np.ndarray, np.ndarray] | None = None
        self.dirty = False  # recorded edits not yet saved
        self.stale = False  # the image's file changed since import (as last read): not editable
        self.history = EditHistory()
        # undo histories of the images shown this session, most recent last: (image id, shape) -> history
        self._histories: OrderedDict[tuple, EditHistory] = OrderedDict()

    @property
    def editable(self) -> bool:
        return self.recorded is not None

    def load(self, verified: np.ndarray, stale: bool = False) -> None:
        """A freshly read image: its stored verified mask; nothing unsaved."""
        self.verified = verified
        self.dirty = False
        self.stale = stale

    def start(self, values: np.ndarray, n_classes: int, editable: bool = True, image_id: str | None = None) -> None:
        """The labels layer now shows `values` (derived from the project, with `verified` as it is): they
        are the recorded state and the merge base. The undo history is the image's own, kept for the
        session across Next / Previous (the last KEPT_HISTORIES images); without image_id it starts over."""
        self.recorded = np.array(values, copy=True) if editable else None
        self.base = (from_layer_values(values, n_classes), self.verified.copy()) if editable else None
        if image_id is None:
            self.history = EditHistory()
            return
        key = (image_id, tuple(values.shape))
        self.history = self._histories.pop(key, None) or EditHistory()
        self._histories[key] = self.history
        while len(self._histories) > KEPT_HISTORIES:
            self._histories.popitem(last=False)

    def forget_histories(self) -> None:
        """Drop every image's undo history (class indices changed: recorded values mean other classes)."""
        self._histories.clear()
        self.history = EditHistory()

    def record(self, layer_values: np.ndarray, touched: np.ndarray | None = None) -> bool:
        """Turn what changed in the layer since the last record into one undo step; changed pixels become
        verified (a stroke is a correction; an erased pixel is confirmed background). touched: pixels a
        brush went over that already showed the painted value (napari changes only the others): verified
        too, so painting over a correct prediction confirms it. False: no change."""
        if self.recorded is None or layer_values.shape != self.recorded.shape:
            return False
        changed = layer_values != self.recorded
        if touched is not None and touched.shape == changed.shape:
            changed |= touched & ~self.verified  # what the step changes: values or verified flags
        if not changed.any():
            return False
        verified = self.verified | changed  # so only changed pixels differ in verified too
        self.history.record(self.recorded, self.verified, layer_values, verified, changed=changed)
        self.recorded = np.array(layer_values, copy=True)
        self.verified = verified
        self.dirty = True
        return True

    def take_save(self, n_classes: int):
        """(labels, verified, base) to write when there are unsaved edits, else None. The next save's edits
        are relative to this one: it becomes the base."""
        if self.recorded is None or not self.dirty:
            return None
        base = self.base
        labels, verified = from_layer_values(self.recorded, n_classes), self.verified
        self.base = (labels, verified)
        self.dirty = False
        return labels, verified, base

    def mark_unsaved(self) -> None:
        """A save failed: the edits are still in the layer, the next save tries again."""
        self.dirty = True

    def adopt(self, saved, n_classes: int, layer_values: np.ndarray | None = None):
        """Take what other writers committed to this image while it was edited (another process's verified
        pixels, a newer prediction), from a written save (`_saving.SavedEdit`): their pixels replace the
        recorded values where this annotator has not changed them since the save, and join the base of the
        next save (so they are not taken for this annotator's edits). layer_values: the layer as it is now
        (recorded first). Returns (mask, layer values) to write into the layer, or None."""
        if self.recorded is None or self.base is None or self.recorded.shape != saved.stored.shape:
            return None
        if layer_values is not None:
            self.record(layer_values)
        others = (saved.stored != saved.labels) | (saved.stored_verified != saved.verified)
        if not others.any():
            return None
        current = from_layer_values(self.recorded, n_classes)
        mine = (current != saved.labels) | (self.verified != saved.verified)  # edits made since that save
        adopt = others & ~mine
        base_labels, base_verified = self.base
        self.base = (np.where(others, saved.stored, base_labels), np.where(others, saved.stored_verified, base_verified))
        if not adopt.any():
            return None
        values = to_layer_values(saved.stored)
        self.recorded = np.where(adopt, values, self.recorded)
        self.verified = np.where(adopt, saved.stored_verified, self.verified)
        return adopt, values

    def step(self, redo: bool, layer_values: np.ndarray) -> np.ndarray | None:
        """Undo (or redo) the last edit: labels and verified pixels together. Returns the layer's new values
        (to show, then save), or None when there is nothing to undo (redo)."""
        self.record(layer_values)  # a stroke not yet recorded is the step to undo
        values, verified = np.array(layer_values, copy=True), self.verified.copy()
        if not (self.history.redo if redo else self.history.undo)(values, verified):
            return None
        self.recorded, self.verified, self.dirty = values, verified, True
        return values

    def unverify(self, class_index: int | None, layer_values: np.ndarray | None = None) -> int:
        """Un-verify pixels as one undoable edit: all of them (None) or one class's; their labels stay.
        Returns how many pixels were verified before."""
        if layer_values is not None:
            self.record(layer_values)
        values = self.recorded
        mask = self.verified if class_index is None else self.verified & (values == class_index + 1)
        count = int(mask.sum())
        verified = self.verified & ~mask
        if self.history.record(values, self.verified, values, verified):
            self.verified, self.dirty = verified, True
        return count

    def verify(self, class_index: int | None, layer_values: np.ndarray | None = None) -> np.ndarray:
        """Verify pixels as one undoable edit: every pixel (class_index None: Reviewed ✓, unlabelled pixels
        as confirmed background) or those of one class (Class ✓). Returns the values verified."""
        if layer_values is not None:
            self.record(layer_values)
        values = self.recorded
        if class_index is None:
            verified = np.ones(values.shape, bool)
        else:
            verified = self.verified | (values == class_index + 1)
        if self.history.record(values, self.verified, values, verified):
            self.verified, self.dirty = verified, True
        return values

    def paint_verified(self, mask: np.ndarray, value: int, layer_values: np.ndarray | None = None) -> np.ndarray:
        """Give the pixels in `mask` the layer value `value` and verify them, as one undoable edit (the feature
        wand: pixels that already had the class are verified too). Returns the layer's new values."""
        if layer_values is not None:
            self.record(layer_values)
        changed = mask & ((self.recorded != value) | ~self.verified)
        if not changed.any():
            return self.recorded
        values, verified = self.recorded.copy(), self.verified.copy()
        values[changed] = value
        verified[changed] = True
        self.history.record(self.recorded, self.verified, values, verified, changed=changed)
        self.recorded, self.verified, self.dirty = values, verified, True
        return self.recorded
