"""The annotator's labels layer: a napari Labels layer that also remembers what its brush went over.

napari paints, and reports in its `paint` event, only the pixels whose value changes: a brush stroke of a
class over pixels that already show that class changes nothing, so it would verify nothing, although the
user just said "this is road". `StrokeLabels.paint` (every brush and eraser dab, from the mouse or a
script) also notes the pixels under the brush that now carry the painted label; `take_touched()` hands
them to the edit recorder (`editing.EditState.record`), which verifies them with the changed ones. A mouse
stroke that changed no pixel fires no `paint` event, so the layer fires `events.touched` when such a
stroke ends.
"""
from __future__ import annotations

import numpy as np
from napari.layers import Labels
from napari.utils.events import Event


def brush_footprint(shape: tuple[int, int], coord, brush_size: float) -> tuple[tuple[slice, slice], np.ndarray]:
    """(bounding box, mask) of napari's round brush of `brush_size` centred at `coord` (row, col) on a 2-D
    layer of `shape`: the pixels within floor(size / 2) + 0.5 of the rounded centre."""
    radius = np.floor(brush_size / 2) + 0.5
    reach = int(np.floor(radius))
    centre = np.round(np.asarray(coord[-2:], dtype=float)).astype(int)
    low = np.maximum(centre - reach, 0)
    high = np.minimum(centre + reach + 1, shape)
    if np.any(low >= high):
        return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), bool)
    rows = np.arange(low[0], high[0])[:, None] - centre[0]
    cols = np.arange(low[1], high[1])[None, :] - centre[1]
    return (slice(low[0], high[0]), slice(low[1], high[1])), rows ** 2 + cols ** 2 <= radius ** 2


class StrokeLabels(Labels):
    """A Labels layer whose brush also reports the pixels it confirmed (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events.add(touched=Event)
        self._touched: np.ndarray | None = None
        self.events.data.connect(self._forget_touched)  # new labels (another image): nothing touched
        self.mouse_drag_callbacks.append(_end_of_stroke)

    def paint(self, coord, new_label, refresh=True):
        super().paint(coord, new_label, refresh)
        if self.ndim != 2:
            return
        box, mask = brush_footprint(self.data.shape, coord, self.brush_size)
        mask &= np.asarray(self.data[box]) == new_label  # what the dab left with the painted label
        if mask.any():
            if self._touched is None:
                self._touched = np.zeros(self.data.shape, bool)
            self._touched[box] |= mask

    def take_touched(self) -> np.ndarray | None:
        """The pixels brushed since the last call that carry the label painted over them (None: none)."""
        touched, self._touched = self._touched, None
        return touched

    def _forget_touched(self, event=None) -> None:
        self._touched = None


def _end_of_stroke(layer: StrokeLabels, event):
    """Mouse-drag callback: when a stroke ends with brushed pixels not yet handed over, say so."""
    yield
    while event.type == "mouse_move":
        yield
    if layer._touched is not None:
        layer.events.touched()
