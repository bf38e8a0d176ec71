"""The "Review" panel: where the model is unsure on this image (the low-confidence overlay, its threshold,
Next unsure region), the feature wand (on/off, similarity, Apply / Discard) and the keyboard help.

Signals (the widget acts on them): unsure_toggled(bool), threshold_changed(float), next_region_requested,
keys_requested, wand_toggled(bool), similarity_changed(float), apply_wand_requested, discard_wand_requested.
"""
from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QCheckBox, QDoubleSpinBox, QGridLayout, QGroupBox, QLabel, QPushButton, QSlider

from .. import _wording as say
from .._unsure import UNSURE_BELOW
from .._wand import WAND_SIMILARITY


class ReviewPanel(QGroupBox):
    unsure_toggled = Signal(bool)
    threshold_changed = Signal(float)
    next_region_requested = Signal()
    keys_requested = Signal()
    wand_toggled = Signal(bool)
    similarity_changed = Signal(float)
    apply_wand_requested = Signal()
    discard_wand_requested = Signal()

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
        # the feature wand
        self.wand_button = QPushButton("Feature wand")
        self.wand_button.setCheckable(True)
        self.wand_button.setToolTip(say.TIPS["wand"])
        self.wand_button.toggled.connect(self.wand_toggled.emit)
        self.similarity_slider = QSlider(Qt.Orientation.Horizontal)
        self.similarity_slider.setRange(50, 99)  # cosine x 100
        self.similarity_slider.setValue(round(WAND_SIMILARITY * 100))
        self.similarity_slider.setToolTip(say.TIPS["wand_similarity"])
        self.similarity_label = QLabel()
        self.similarity_slider.valueChanged.connect(self._on_similarity)
        self.apply_wand_button = QPushButton("Apply wand ✓")
        self.apply_wand_button.setToolTip(say.TIPS["apply_wand"])
        self.apply_wand_button.setEnabled(False)
        self.apply_wand_button.clicked.connect(lambda: self.apply_wand_requested.emit())
        self.discard_wand_button = QPushButton("Discard")
        self.discard_wand_button.clicked.connect(lambda: self.discard_wand_requested.emit())
        grid.addWidget(self.wand_button, 3, 0)
        grid.addWidget(self.similarity_label, 3, 1)
        grid.addWidget(self.similarity_slider, 4, 0, 1, 2)
        grid.addWidget(self.apply_wand_button, 5, 0)
        grid.addWidget(self.discard_wand_button, 5, 1)
        self._on_similarity(self.similarity_slider.value(), emit=False)

    def similarity(self) -> float:
        """The wand's cosine threshold."""
        return self.similarity_slider.value() / 100

    def _on_similarity(self, value: int, emit: bool = True) -> None:
        self.similarity_label.setText(say.similarity(value / 100))
        if emit:
            self.similarity_changed.emit(value / 100)

    def set_state(self, has_image: bool) -> None:
        for control in (self.unsure_check, self.unsure_threshold, self.next_region_button, self.wand_button):
            control.setEnabled(has_image)
