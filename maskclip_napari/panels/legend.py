"""The class legend beside the canvas: each class's colour, name and key, with a check box that hides it on
the labels layer, and "only the brush's class" (napari's show_selected_label). It lets the dock's class
table scroll out of sight while painting.

Signals: hidden_changed(list of class names hidden), only_brush_changed(bool).
"""
from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QCheckBox, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from .. import _wording as say
from .images import swatch_icon


class LegendPanel(QWidget):
    hidden_changed = Signal(list)
    only_brush_changed = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        v = QVBoxLayout(self)
        v.setContentsMargins(4, 4, 4, 4)
        self.class_list = QListWidget()
        self.class_list.setToolTip(say.TIPS["legend"])
        self.class_list.setMinimumHeight(110)  # about five classes in sight
        self.class_list.itemChanged.connect(self._on_item)
        self.only_brush_check = QCheckBox("Only the brush's class")
        self.only_brush_check.setToolTip(say.TIPS["only_brush"])
        self.only_brush_check.toggled.connect(self.only_brush_changed.emit)
        v.addWidget(self.class_list)
        v.addWidget(self.only_brush_check)
        self._filling = False

    def show_classes(self, names, colours, hidden) -> None:
        """One checked row per class (unchecked: hidden on the labels layer)."""
        self._filling = True
        try:
            self.class_list.clear()
            for i, (name, rgb) in enumerate(zip(names, colours)):
                item = QListWidgetItem(swatch_icon(rgb), say.legend_row(i, name))
                item.setData(Qt.ItemDataRole.UserRole, name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Unchecked if name in hidden else Qt.CheckState.Checked)
                self.class_list.addItem(item)
        finally:
            self._filling = False

    def hidden(self) -> list[str]:
        items = (self.class_list.item(r) for r in range(self.class_list.count()))
        return [item.data(Qt.ItemDataRole.UserRole) for item in items
                if item.checkState() != Qt.CheckState.Checked]

    def set_visible(self, name: str, visible: bool) -> None:
        """Check or uncheck a class's row (as a click on its box does)."""
        for r in range(self.class_list.count()):
            item = self.class_list.item(r)
            if item.data(Qt.ItemDataRole.UserRole) == name:
                item.setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)

    def _on_item(self, item) -> None:
        if not self._filling:
            self.hidden_changed.emit(self.hidden())
