"""The top of the dock: the message line, what is under the cursor and a busy bar (always in sight)."""
from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget
from superqt import QElidingLabel

from .. import _wording as say


class StatusPanel(QWidget):
    """`message` (selectable, red for errors), `hover_label` (one eliding line) and `busy_bar`."""

    def __init__(self, parent=None):
        super().__init__(parent)
        v = QVBoxLayout(self)
        v.setContentsMargins(6, 6, 6, 0)
        v.setSpacing(2)
        self.message = QLabel(say.START)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)  # busy: an indefinite animation
        self.busy_bar.setTextVisible(False)
        self.busy_bar.setMaximumHeight(8)
        # napari's theme draws a 6-px grey bar on dark grey: an accent colour shows it is busy
        self.busy_bar.setStyleSheet("QProgressBar::chunk { background-color: #4a90d9; }")
        policy = self.busy_bar.sizePolicy()
        policy.setRetainSizeWhenHidden(True)  # showing it must not re-lay out the whole dock
        self.busy_bar.setSizePolicy(policy)
        self.busy_bar.setVisible(False)
        # what is under the cursor (class, confidence, verified): one line, so hovering never re-lays out the dock
        self.hover_label = QElidingLabel("")
        v.addWidget(self.message)
        v.addWidget(self.hover_label)
        v.addWidget(self.busy_bar)

    def show_message(self, text: str, error: bool = False) -> None:
        self.message.setStyleSheet("color: #e05555;" if error else "")
        self.message.setText(text)
