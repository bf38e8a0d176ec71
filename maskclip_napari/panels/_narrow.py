"""Widgets that let the dock be narrow (~380 px, issue 22)."""
from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QGroupBox
from superqt import QCollapsible

NARROW_COMBO_CHARS = 8  # a combo box is at least this many characters wide, however long its entries


class NarrowCombo(QComboBox):
    """A combo box sized to a short text, not its longest entry (entries show in full in the open list).
    Set before anything measures it: QComboBox keeps its first minimum size hint."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(NARROW_COMBO_CHARS)


def foldable(panel: QGroupBox) -> QCollapsible:
    """The panel in a section a user may fold away (expanded at first), titled as the panel was."""
    section = QCollapsible(panel.title())
    panel.setTitle("")
    section.addWidget(panel)
    section.expand(animate=False)
    return section
