"""The feature wand as a tool of the labels layer (`_wand` does the math; `panels.review` holds its controls).

With the wand on, the labels layer is in pan/zoom mode (a click must not paint) and a click without a drag
previews the region in cyan (the "wand preview" layer: the brush's colour would vanish over labels of the
same class); the similarity control redraws the
preview; *Apply wand ✓* gives the region the brush's class and verifies it, as one undoable edit
(`EditState.paint_verified`), saved like a stroke. Turning the wand off puts the previous tool back.
"""
from __future__ import annotations

import weakref
from typing import Callable

import numpy as np
from qtpy.QtCore import QObject, Signal

from . import _wording as say
from ._layer_manager import WAND_LAYER
from ._layers import WAND_COLOUR
from ._wand import FeatureWand, held_features

CLICK_SLOP_PX = 3  # a press and release this close (canvas pixels) is a click, not a pan


class WandTool(QObject):
    """context: () -> (project, image id, image, session, method) shown now."""

    message = Signal(str, bool)

    def __init__(self, layers, panel, editor, context: Callable, parent=None):
        super().__init__(parent)
        self.layers, self.panel, self.editor, self._context = layers, panel, editor, context
        self.wand: FeatureWand | None = None
        self.preview: np.ndarray | None = None
        self._mode_before: str | None = None
        self._hooked = None  # weak reference to the labels layer whose clicks the wand takes
        # (image array, session, method, features) of the last click: finding them in the model's cache
        # hashes the image (~0.1 s at 12 Mpx), which further clicks on the same image need not repeat
        self._features: tuple | None = None
        panel.wand_toggled.connect(self.set_active)
        panel.similarity_changed.connect(lambda _: self._redraw())
        panel.apply_wand_requested.connect(self.apply)
        panel.discard_wand_requested.connect(self.discard)

    @property
    def active(self) -> bool:
        return self.panel.wand_button.isChecked()

    def set_active(self, on: bool) -> None:
        layer = self.layers.labels_layer
        if layer is None:
            return
        if on:
            self._hook(layer)
            self._mode_before = str(layer.mode)
            layer.mode = "pan_zoom"
            self.message.emit(say.WAND_ON, False)
        else:
            self.discard()
            if self._mode_before is not None and layer.editable:
                layer.mode = self._mode_before
            self._mode_before = None

    def _hook(self, layer) -> None:
        if self._hooked is not None and self._hooked() is layer:
            return
        me = weakref.ref(self)

        def on_press(lyr, event):
            start = np.asarray(event.pos, float)
            position = lyr.world_to_data(event.position)
            yield
            moved = False
            while event.type == "mouse_move":
                moved = moved or np.abs(np.asarray(event.pos, float) - start).max() > CLICK_SLOP_PX
                yield
            tool = me()
            if tool is not None and tool.active and not moved:
                tool.click(tuple(position[-2:]))

        layer.mouse_drag_callbacks.append(on_press)
        self._hooked = weakref.ref(layer)

    def click(self, point: tuple[float, float]) -> None:
        """Preview the region of the pixel at `point` (data coordinates: row, column)."""
        project, image_id, image, session, method = self._context()
        if image_id is None or image is None:
            return
        h, w = image.shape[:2]
        if not (0 <= point[0] < h and 0 <= point[1] < w):
            return
        features = self._held_features(image, session, method)
        if features is None:
            self.message.emit(say.WAND_NEEDS_FEATURES, True)
            return
        self.wand = FeatureWand(features, point, (h, w))
        self._redraw()

    def _held_features(self, image, session, method):
        cached = self._features
        if cached is not None and cached[0] is image and cached[1] is session and cached[2] == method:
            return cached[3]
        features = held_features(session, image, method) if method is not None else None
        self._features = (image, session, method, features) if features is not None else None
        return features

    def _redraw(self) -> None:
        if self.wand is None:
            return
        self.preview = self.wand.region(self.panel.similarity())
        y0, y1, x0, x1 = self.wand.box
        self.layers.show_mask(WAND_LAYER, self.preview[y0:y1, x0:x1], WAND_COLOUR, 0.6, offset=(y0, x0))
        self.panel.apply_wand_button.setEnabled(True)
        self.message.emit(say.wand_preview(int(self.preview.sum()), self.panel.similarity()), False)

    def apply(self) -> None:
        """The previewed region takes the brush's class and is verified (one undo step, saved)."""
        project, image_id, _, _, _ = self._context()
        layer = self.layers.labels_layer
        if self.preview is None or layer is None or project is None or not self.editor.edits.editable:
            return
        value = int(layer.selected_label)
        if not 1 <= value <= len(project.classes):
            self.message.emit(say.SELECT_CLASS_FIRST, True)
            return
        if self.preview.shape != layer.data.shape:
            self.discard()
            return
        self.editor.edits.paint_verified(self.preview, value, layer.data)
        y0, y1, x0, x1 = self.wand.box
        # in place, as undo does (napari's data_setitem keeps its own history: 3x slower on a large region)
        layer.data[y0:y1, x0:x1][self.preview[y0:y1, x0:x1]] = value
        layer.refresh()
        self.editor.save(source="wand")
        count = int(self.preview.sum())
        self.discard()
        self.message.emit(say.wand_applied(count, project.class_names[value - 1], image_id), False)

    def image_changed(self, *_) -> None:
        """Another image is shown: its preview and the last image's features go."""
        self._features = None
        self.discard()

    def discard(self) -> None:
        """Drop the preview (a new image, the wand off, Discard)."""
        self.wand, self.preview = None, None
        self.layers.show_mask(WAND_LAYER, None, WAND_COLOUR, 0.6)
        self.panel.apply_wand_button.setEnabled(False)
