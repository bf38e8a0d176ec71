"""Watching the viewer's main window for its Close event (Qt, no widgets of this plugin imported).

napari may close without hiding the dock first, and Qt tears the widgets down after the window's Close
event: that event is the moment to write what waits on a timer.
"""
from __future__ import annotations

from typing import Callable

from qtpy.QtCore import QEvent, QObject


class CloseWatcher(QObject):
    """Calls `on_close()` once the main window holding `widget` (the root of its parent chain) gets its
    Close event. `watch()` again after the widget moved (docked, floated); a watcher is a child of the
    widget, so it goes away with it."""

    def __init__(self, widget, on_close: Callable[[], None]):
        super().__init__(widget)
        self._widget, self._on_close, self.window = widget, on_close, None

    def watch(self) -> None:
        root = self._widget
        while root.parent() is not None:
            root = root.parent()
        if root is not self._widget and root is not self.window:
            if self.window is not None:
                self.window.removeEventFilter(self)
            root.installEventFilter(self)
            self.window = root

    def eventFilter(self, obj, event):
        if obj is self.window and event.type() == QEvent.Type.Close:
            obj.removeEventFilter(self)
            self.window = None
            self._on_close()
        return False
