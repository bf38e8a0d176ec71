"""Review tools on the current image: the low-confidence overlay and *Next unsure region* (`_unsure` does the
math, `_layer_manager` the layer, `panels.review` the controls).

The confidence is the segmentation on screen's (it follows the settings) or, when none was computed in this
session, the one the project stored with the image's last segmentation (read once per image shown, in a
thread: a 12-Mpx map takes a few hundred milliseconds to decode).
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np
from qtpy.QtCore import QObject, Signal

from maskclip.errors import MaskCLIPError

from . import _wording as say
from ._unsure import UnsureRegions, unsure_mask

REGION_CONTEXT = 3.0  # the view shows a region with this many times its size around it
MAX_ZOOM_OVER_FIT = 8.0  # at most this much closer than the whole image


def camera(viewer):
    """napari's camera (`viewer.scene.camera` from napari 0.9, `viewer.camera` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def canvas_size(viewer) -> tuple[float, float]:
    """The canvas (height, width) in screen pixels."""
    canvas = getattr(viewer, "canvas", None)
    size = getattr(canvas, "size", None) if canvas is not None else None
    return tuple(size) if size is not None else tuple(viewer._canvas_size)


class ReviewTools(QObject):
    """current: () -> (project, image id, segmentation or None, verified mask or None) shown now."""

    message = Signal(str, bool)
    _map_read = Signal(object, str, object)  # (project, image id, stored map or None), from the reading thread

    def __init__(self, viewer, layers, panel, current: Callable, parent=None):
        super().__init__(parent)
        self.viewer, self.layers, self.panel, self._current = viewer, layers, panel, current
        self.regions = UnsureRegions()
        self._stored: tuple[str, np.ndarray | None] | None = None  # (image id, its stored confidence map)
        self._reading: str | None = None  # the image whose stored map a thread reads now
        self._jump_pending = False  # Next unsure region was pressed while the map was being read
        self._map_read.connect(self._on_map_read)
        panel.unsure_toggled.connect(lambda _: self.refresh())
        panel.threshold_changed.connect(lambda _: self.refresh())
        panel.next_region_requested.connect(self.next_region)

    @property
    def reading(self) -> bool:
        """A stored confidence map is being read (the overlay follows when it is)."""
        return self._reading is not None

    @property
    def showing(self) -> bool:
        return self.panel.unsure_check.isChecked()

    def image_changed(self, *_) -> None:
        """A new image is shown: its stored map is read again when needed."""
        self._stored, self._jump_pending = None, False
        self.refresh()

    def refresh(self, *_) -> None:
        """Recompute the overlay (shown, threshold, segmentation, verified pixels changed); hidden: nothing."""
        if not self.showing:
            self.layers.show_unsure(None)
            self.panel.source_label.setText("")
            return
        mask = self._mask()
        if mask is None and self._reading is not None:
            return  # shown when read
        self.layers.show_unsure(mask)
        if mask is None:
            self.message.emit(say.NO_CONFIDENCE_HERE, False)

    def _confidence(self) -> tuple[np.ndarray | None, str]:
        project, image_id, seg, _ = self._current()
        if project is None or image_id is None:
            return None, ""
        rec = project.record(image_id)
        if seg is not None and seg.probs.shape[1:] == (rec.height, rec.width):
            return seg.probs.max(axis=0), "shown"
        if self._stored is not None and self._stored[0] == image_id:
            return self._stored[1], "stored"
        if self._reading != image_id:
            self._reading = image_id
            threading.Thread(target=self._read_map, args=(project, image_id), name="maskclip-confidence-read",
                             daemon=True).start()
        return None, "stored"

    def _read_map(self, project, image_id: str) -> None:
        """Thread body: the stored map, or None when there is none or it cannot be read (nothing to shade)."""
        try:
            confidence = project.confidence_map(image_id)
        except MaskCLIPError:
            confidence = None
        self._map_read.emit(project, image_id, confidence)

    def _on_map_read(self, project, image_id: str, confidence) -> None:
        current_project, current_id = self._current()[:2]
        if image_id == self._reading:
            self._reading = None
        if project is current_project and image_id == current_id:
            self._stored = (image_id, confidence)
            self.refresh()
            if self._jump_pending:
                self.next_region()

    def _mask(self) -> np.ndarray | None:
        confidence, source = self._confidence()
        _, image_id, _, verified = self._current()
        if confidence is None:
            self.regions.update(None, None)
            self.panel.source_label.setText("")
            return None
        below = self.panel.unsure_threshold.value()
        mask = unsure_mask(confidence, verified, below)
        self.regions.update((image_id, source, below), mask)
        self.panel.source_label.setText(say.unsure_share(float(mask.mean()), below, source))
        return mask

    def next_region(self) -> None:
        """Centre the view on the next unsure region (largest first), zoomed to show it with some context;
        the overlay is shown if it was not."""
        if not self.showing:
            self.panel.unsure_check.setChecked(True)  # refreshes
        elif self.regions.mask is None:
            self.refresh()
        self._jump_pending = self.regions.mask is None and self._reading is not None
        if self.regions.mask is None:
            return
        found = self.regions.next()
        if found is None:
            self.message.emit(say.NO_UNSURE_REGION, False)
            return
        region, rank, count = found
        self._look_at(region)
        self.message.emit(say.unsure_region(rank, count, region.pixels), False)

    def _look_at(self, region) -> None:
        h, w = self.regions.mask.shape
        ch, cw = canvas_size(self.viewer)
        fit = min(ch / h, cw / w)
        span_h = max(region.r1 - region.r0, 1) * REGION_CONTEXT
        span_w = max(region.c1 - region.c0, 1) * REGION_CONTEXT
        cam = camera(self.viewer)
        cam.center = region.centre
        cam.zoom = float(np.clip(min(ch / span_h, cw / span_w), fit, fit * MAX_ZOOM_OVER_FIT))
