"""The "Review" panel: where the model is unsure on this image (the low-confidence overlay, its threshold,
Next unsure region) and the keyboard help.

Signals (the widget acts on them): unsure_toggled(bool), threshold_changed(float), next_region_requested,
keys_requested.
"""
from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QCheckBox, QDoubleSpinBox, QGridLayout, QGroupBox, QLabel, QPushButton

from .. import _wording as say
from .._unsure import UNSURE_BELOW


class ReviewPanel(QGroupBox):
    unsure_toggled = Signal(bool)
    threshold_changed = Signal(float)
    next_region_requested = Signal()
    keys_requested = Signal()

    def __init__(self, parent=None):
        super().__init__("Review", parent)
        grid = QGridLayout(self)
        self.unsure_check = QCheckBox("Show where unsure")
        self.unsure_check.setToolTip(say.TIPS["unsure"])
        self.unsure_check.toggled.connect(self.unsure_toggled.emit)
        self.unsure_threshold = QDoubleSpinBox()
        self.unsure_threshold.setRange(0.05, 0.95)
        self.unsure_threshold.setSingleStep(0.05)
        self.unsure_threshold.setValue(UNSURE_BELOW)
        self.unsure_threshold.setPrefix("below ")
        self.unsure_threshold.setToolTip(say.TIPS["unsure_threshold"])
        self.unsure_threshold.valueChanged.connect(self.threshold_changed.emit)
        self.next_region_button = QPushButton("Next unsure region ▶")
        self.next_region_button.setToolTip(say.TIPS["next_region"])
        self.next_region_button.clicked.connect(lambda: self.next_region_requested.emit())
        self.keys_button = QPushButton("Keyboard shortcuts…")
        self.keys_button.setToolTip(say.TIPS["keys"])
        self.keys_button.clicked.connect(lambda: self.keys_requested.emit())
        grid.addWidget(self.unsure_check, 0, 0)
        grid.addWidget(self.unsure_threshold, 0, 1)
        grid.addWidget(self.next_region_button, 1, 0)
        grid.addWidget(self.keys_button, 1, 1)
        self.source_label = QLabel("")  # which confidence the overlay shows
        self.source_label.setWordWrap(True)
        grid.addWidget(self.source_label, 2, 0, 1, 2)

    def set_state(self, has_image: bool) -> None:
        for control in (self.unsure_check, self.unsure_threshold, self.next_region_button):
            control.setEnabled(has_image)
