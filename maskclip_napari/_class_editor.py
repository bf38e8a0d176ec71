"""Class editor: a table of (colour, name, synonyms, taught) plus the background prompts.

The editor holds no state of its own: it shows the project's classes and turns each edit into one request
signal. The annotator applies the request to the project and calls `set_classes` again with the result,
so a refused edit (duplicate name, ...) simply snaps back. Selecting a row says which class the user
wants to paint (`class_selected`); `select_class` shows a choice made elsewhere (the labels layer).
`show_taught` fills the "Taught" column (verified pixels each class taught the learner; hidden while
learning from corrections is off).
"""
from __future__ import annotations

from typing import Sequence

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QToolButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from . import _wording as say

COLOUR, NAME, SYNONYMS, TAUGHT = range(4)


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


class ClassEditor(QWidget):
    add_requested = Signal(str, list)  # name, synonyms
    remove_requested = Signal(str)
    rename_requested = Signal(str, str)
    synonyms_requested = Signal(str, list)
    colour_requested = Signal(str, tuple)
    reorder_requested = Signal(list)
    background_requested = Signal(list)
    class_selected = Signal(str)  # the user selected a row

    def __init__(self, parent=None):
        super().__init__(parent)
        self._names: list[str] = []
        self._taught: dict[str, int] | None = None
        self._updating = False

        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["", "Class", "Synonyms", "Taught"])
        self.table.horizontalHeaderItem(SYNONYMS).setToolTip("Other names of the class, comma separated; "
                                                             "their text embeddings are averaged")
        self.table.horizontalHeaderItem(TAUGHT).setToolTip(say.TIPS["taught"])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(COLOUR, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(COLOUR, 26)
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(NAME, 110)
        header.setSectionResizeMode(SYNONYMS, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(TAUGHT, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setColumnHidden(TAUGHT, True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setMinimumHeight(120)
        self.table.setToolTip("Select a class to paint it (or press its number key 1-9 over the image)")
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.cellDoubleClicked.connect(self._on_double_click)

        self.new_name = QLineEdit()
        self.new_name.setPlaceholderText("new class, e.g. car, vehicle")
        self.new_name.returnPressed.connect(self._on_add)
        self.add_button = QToolButton(text="Add")
        self.add_button.setToolTip("Add the class (synonyms after commas)")
        self.add_button.clicked.connect(self._on_add)
        self.remove_button = QToolButton(text="Remove")
        self.remove_button.setToolTip("Remove the selected class (its pixels become unlabelled)")
        self.remove_button.clicked.connect(self._on_remove)
        up, down = QToolButton(text="↑"), QToolButton(text="↓")
        up.setToolTip("Move the selected class up")
        down.setToolTip("Move the selected class down")
        up.clicked.connect(lambda: self.move_selected(-1))
        down.clicked.connect(lambda: self.move_selected(+1))

        self.background = QLineEdit()
        self.background.setPlaceholderText("none: every pixel gets one of the classes above")
        self.background.setToolTip(
            "Background prompts, comma separated. They compete with your classes and their pixels stay "
            "unlabelled (merged into one 'background' output), which keeps stray classes from spreading.")
        self.background.editingFinished.connect(self._on_background)
        self.background_taught = QLabel()  # confirmed background the learner learned from (see show_taught)
        self.background_taught.setToolTip(say.TIPS["taught_background"])
        self.background_taught.setVisible(False)

        row = QHBoxLayout()
        row.addWidget(self.new_name, 1)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        row.addWidget(up)
        row.addWidget(down)
        bg = QHBoxLayout()
        bg.addWidget(QLabel("Background:"))
        bg.addWidget(self.background, 1)
        bg.addWidget(self.background_taught)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(row)
        layout.addLayout(bg)

    # --- showing --------------------------------------------------------------------------------
    def set_classes(self, classes: Sequence, background: Sequence[str]) -> None:
        """Show project classes (objects with name, synonyms, colour) and background prompts."""
        selected = self.selected_name()
        self._updating = True
        try:
            self._names = [c.name for c in classes]
            self.table.setRowCount(len(classes))
            for row, c in enumerate(classes):
                swatch = QTableWidgetItem()
                swatch.setBackground(QColor(*c.colour))
                swatch.setFlags(Qt.ItemFlag.ItemIsEnabled)  # not selectable: the selection would hide the colour
                swatch.setToolTip("Double-click to change the colour")
                self.table.setItem(row, COLOUR, swatch)
                self.table.setItem(row, NAME, QTableWidgetItem(c.name))
                self.table.setItem(row, SYNONYMS, QTableWidgetItem(", ".join(c.synonyms)))
                self.table.setItem(row, TAUGHT, self._taught_item(c.name))
            self.background.setText(", ".join(background))
            if selected in self._names:
                self.table.selectRow(self._names.index(selected))
        finally:
            self._updating = False

    def show_taught(self, taught: dict[str, int] | None, background: int | None = None) -> None:
        """Verified pixels per class name that taught the learner, and the confirmed background (None: not
        shown); taught None hides the column (learning from corrections is off)."""
        self._taught = taught
        self.table.setColumnHidden(TAUGHT, taught is None)
        self._updating = True
        try:
            for row, name in enumerate(self._names):
                self.table.setItem(row, TAUGHT, self._taught_item(name))
        finally:
            self._updating = False
        shown = taught is not None and background is not None
        self.background_taught.setVisible(shown)
        self.background_taught.setText(say.background_taught(background) if shown else "")

    def taught_text(self, name: str) -> str:
        """What the Taught column shows for a class ("" while hidden)."""
        index = self._names.index(name)
        item = self.table.item(index, TAUGHT)
        return item.text() if item is not None and not self.table.isColumnHidden(TAUGHT) else ""

    def _taught_item(self, name: str) -> QTableWidgetItem:
        count = (self._taught or {}).get(name, 0)
        item = QTableWidgetItem(say.pixel_count(count) if self._taught is not None else "")
        item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)  # not editable
        item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
        item.setToolTip(say.taught(count, name))
        return item

    def select_class(self, name: str | None) -> None:
        """Select the row of `name` (none for None or an unknown name) without emitting class_selected."""
        self._updating = True
        try:
            if name in self._names:
                self.table.selectRow(self._names.index(name))
            else:
                self.table.clearSelection()
        finally:
            self._updating = False

    def _on_selection(self) -> None:
        name = self.selected_name()
        if not self._updating and name is not None:
            self.class_selected.emit(name)

    def selected_name(self) -> str | None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        return self._names[min(rows)] if rows and min(rows) < len(self._names) else None

    # --- edits -> requests ----------------------------------------------------------------------
    def _on_add(self) -> None:
        names = _split(self.new_name.text())
        if names:
            self.add_requested.emit(names[0], names[1:])
            self.new_name.clear()

    def _on_remove(self) -> None:
        name = self.selected_name()
        if name is not None:
            self.remove_requested.emit(name)

    def move_selected(self, step: int) -> None:
        """Move the selected class up (-1) or down (+1), as the arrow buttons do."""
        name = self.selected_name()
        if name is None:
            return
        i = self._names.index(name)
        j = i + step
        if 0 <= j < len(self._names):
            order = list(self._names)
            order[i], order[j] = order[j], order[i]
            self.reorder_requested.emit(order)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._updating or item.row() >= len(self._names):
            return
        name = self._names[item.row()]
        if item.column() == NAME:
            new = item.text().strip()
            if new != name:
                self.rename_requested.emit(name, new)
        elif item.column() == SYNONYMS:
            self.synonyms_requested.emit(name, _split(item.text()))

    def _on_double_click(self, row: int, column: int) -> None:
        if column != COLOUR or row >= len(self._names):
            return
        current = self.table.item(row, COLOUR).background().color()
        colour = QColorDialog.getColor(current, self, f"Colour of {self._names[row]}")
        if colour.isValid():
            self.colour_requested.emit(self._names[row], (colour.red(), colour.green(), colour.blue()))

    def _on_background(self) -> None:
        if not self._updating:
            self.background_requested.emit(_split(self.background.text()))
