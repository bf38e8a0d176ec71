"""The current image's revisions (source, time) with *Restore*: a small window opened from the Images panel.

Signals: restore_requested(int rev). The widget fills it (`show_history`) from `Project.history` and restores
with `Project.restore_revision` (a new revision: restoring is itself undoable by restoring again).
"""
from __future__ import annotations

import time

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout

from .. import _wording as say


def describe_revision(entry: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.get("time", 0.0)))
    current = "  (current)" if entry.get("current") else ""
    return f"r{entry['rev']}  {when}  {entry.get('source', '')}{current}"


class RevisionsDialog(QDialog):
    restore_requested = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle(say.REVISIONS_TITLE)
        v = QVBoxLayout(self)
        self.heading = QLabel("")
        self.heading.setWordWrap(True)
        v.addWidget(self.heading)
        self.list = QListWidget()
        v.addWidget(self.list)
        row = QHBoxLayout()
        self.restore_button = QPushButton("Restore")
        self.restore_button.setToolTip(say.TIPS["restore"])
        self.restore_button.clicked.connect(self._restore)
        close = QPushButton("Close")
        close.clicked.connect(self.hide)
        row.addWidget(self.restore_button)
        row.addWidget(close)
        v.addLayout(row)
        self.list.currentRowChanged.connect(lambda _: self._update())

    def show_history(self, image_id: str, history: list[dict]) -> None:
        """Newest first; the current revision cannot be restored (it is what is shown)."""
        self.heading.setText(say.revisions_of(image_id, len(history)))
        self.list.clear()
        for entry in reversed(history):
            item = QListWidgetItem(describe_revision(entry))
            item.setData(Qt.ItemDataRole.UserRole, (int(entry["rev"]), bool(entry.get("current"))))
            self.list.addItem(item)
        self._update()

    def select_rev(self, rev: int) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole)[0] == rev:
                self.list.setCurrentRow(row)

    def _selected(self):
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _update(self) -> None:
        selected = self._selected()
        self.restore_button.setEnabled(selected is not None and not selected[1])

    def _restore(self) -> None:
        selected = self._selected()
        if selected is not None and not selected[1]:
            self.restore_requested.emit(selected[0])
