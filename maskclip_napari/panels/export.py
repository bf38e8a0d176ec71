"""The "Export" panel: format, verified only, the VOC validation share and Export… (asks for a folder; a
folder that is not empty asks whether to replace the files or choose another folder).

Signal: export_requested(Path out, str format, bool verified_only, bool overwrite).
"""
from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QCheckBox, QDoubleSpinBox, QFileDialog, QGridLayout, QGroupBox, QMessageBox, \
    QPushButton

from maskclip.export import FORMATS

from .. import _wording as say
from ._narrow import NarrowCombo


class ExportPanel(QGroupBox):
    export_requested = Signal(object, str, bool, bool)

    def __init__(self, parent=None):
        super().__init__("Export", parent)
        row = QGridLayout(self)  # two rows: the dock stays narrow
        self.export_format = NarrowCombo()
        self.export_format.addItems(FORMATS)
        self.export_format.setToolTip(say.TIPS["export_format"])
        self.export_verified = QCheckBox("verified only")
        self.export_val = QDoubleSpinBox()
        self.export_val.setRange(0, 50)
        self.export_val.setDecimals(0)
        self.export_val.setSingleStep(5)
        self.export_val.setValue(10)
        self.export_val.setSuffix(" % val")
        self.export_val.setToolTip(say.TIPS["export_val"])
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip(say.TIPS["export"])
        self.export_button.clicked.connect(self._choose_export)
        row.addWidget(self.export_format, 0, 0)
        row.addWidget(self.export_verified, 0, 1)
        row.addWidget(self.export_val, 1, 0)
        row.addWidget(self.export_button, 1, 1)

    def val_fraction(self) -> float:
        """The VOC validation share (0-0.5)."""
        return self.export_val.value() / 100

    def _choose_export(self) -> None:
        """Ask for a folder; a folder that is not empty asks whether to replace files or choose another."""
        while True:
            folder = QFileDialog.getExistingDirectory(self, "Export into a folder")
            if not folder:
                return
            out = Path(folder)
            if not (out.is_dir() and any(out.iterdir())):
                overwrite = False
                break
            answer = self._ask_overwrite(out)
            if answer == "cancel":
                return
            if answer == "overwrite":
                overwrite = True
                break
        self.export_requested.emit(out, self.export_format.currentText(), self.export_verified.isChecked(), overwrite)

    def _ask_overwrite(self, out: Path) -> str:
        """'overwrite', 'another' (choose another folder) or 'cancel'."""
        box = QMessageBox(QMessageBox.Icon.Question, say.EXPORT_NOT_EMPTY_TITLE, f"{out} is not empty.", parent=self)
        box.setInformativeText(say.EXPORT_NOT_EMPTY_INFO)
        replace = box.addButton("Replace files", QMessageBox.ButtonRole.AcceptRole)
        another = box.addButton("Choose another folder…", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setObjectName("maskclip-export-overwrite")
        box.exec_()
        clicked = box.clickedButton()
        return "overwrite" if clicked is replace else "another" if clicked is another else "cancel"
