"""The keyboard help: a small window listing every key the annotator adds and napari's labels keys that
remain (rows from `_shortcuts.help_rows`, the one list the README's table is made from too)."""
from __future__ import annotations

from qtpy.QtWidgets import QAbstractItemView, QDialog, QHeaderView, QLabel, QPushButton, QTableWidget, \
    QTableWidgetItem, QVBoxLayout

from .. import _wording as say
from .._shortcuts import help_rows


class KeysDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle(say.KEYS_TITLE)
        v = QVBoxLayout(self)
        intro = QLabel(say.KEYS_INTRO)
        intro.setWordWrap(True)
        v.addWidget(intro)
        rows = help_rows()
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["key", "action"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        for r, (key, action) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(key))
            self.table.setItem(r, 1, QTableWidgetItem(action.replace("*", "")))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.resizeRowsToContents()
        v.addWidget(self.table)
        close = QPushButton("Close")
        close.clicked.connect(self.hide)
        v.addWidget(close)
        self.resize(620, 560)

    def rows(self) -> list[tuple[str, str]]:
        """What the table shows (key, action), for tests and scripts."""
        return [(self.table.item(r, 0).text(), self.table.item(r, 1).text()) for r in range(self.table.rowCount())]
