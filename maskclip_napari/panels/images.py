"""The "Images" panel: open a folder / add images, the dataset's progress (images verified, per class), the
image list with each image's state and a status filter, navigation (Next unverified, Next least confident),
Reviewed ✓ / Class ✓, and the notice for an image whose file changed on disk.

Signals (the widget acts on them): open_requested(str folder), add_requested(list of paths),
image_selected(int row, by the user), step_requested(int), reviewed_requested, verify_class_requested,
unverify_requested(bool selected class only), history_requested, next_unverified_requested,
least_confident_requested, accept_change_requested.
"""
from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
)
from superqt import QElidingLabel

from .. import _wording as say
from ._narrow import NarrowCombo

STATUS_COLOURS = {"unlabelled": "#7f7f7f", "labelled": "#e6a23c", "verified": "#4caf50", "stale": "#e05555"}


def swatch_icon(rgb, size: int = 10) -> QIcon:
    """A square of one colour (an (r, g, b) tuple or a colour name)."""
    pix = QPixmap(size, size)
    pix.fill(QColor(*rgb) if isinstance(rgb, (tuple, list)) else QColor(rgb))
    return QIcon(pix)


def status_icon(status: str) -> QIcon:
    return swatch_icon(STATUS_COLOURS[status])


def describe_item(item: QListWidgetItem, state) -> None:
    """An image's list row from its ImageState: id, labelled/verified share or status, icon and tooltip."""
    status = state.status
    if status == "stale":
        text = f"{state.id}   stale: changed on disk"
    elif state.labelled_pixels:
        text = f"{state.id}   {state.labelled_fraction:.0%} labelled, {state.verified_fraction:.0%} verified"
    elif status == "verified":
        text = f"{state.id}   verified: all background"
    elif status == "unlabelled" and state.rev:
        text = f"{state.id}   all background (segmented, not verified)"
    elif status == "unlabelled":
        text = f"{state.id}   not segmented yet"
    else:
        text = f"{state.id}   {status}"
    item.setText(text)
    item.setIcon(status_icon(status))
    item.setData(Qt.ItemDataRole.UserRole, state.id)
    item.setToolTip(f"{state.path}\n{state.width}x{state.height}, {status}")


def review_kind(state) -> str:
    """Which status filter an image falls under: "reviewed" (every pixel decided), "partly" (some pixels
    verified) or "unverified" (none; a stale image too: its labels wait for a decision)."""
    if state.status == "verified":
        return "reviewed"
    if not state.stale and (state.verified_pixels or state.verified_background_pixels):
        return "partly"
    return "unverified"


class ImagesPanel(QGroupBox):
    """Open folder / add images, the image list, navigation and verification."""

    open_requested = Signal(str)
    add_requested = Signal(list)
    image_selected = Signal(int)
    step_requested = Signal(int)
    reviewed_requested = Signal()
    verify_class_requested = Signal()
    unverify_requested = Signal(bool)
    history_requested = Signal()
    next_unverified_requested = Signal()
    least_confident_requested = Signal()
    accept_change_requested = Signal()

    def __init__(self, project_subfolder: str, parent=None):
        super().__init__("Images", parent)
        self._updating_list = False
        v = QVBoxLayout(self)
        row = QHBoxLayout()
        self.open_folder_button = QPushButton("Open folder…")
        self.open_folder_button.setToolTip(say.TIPS["open_folder"].format(subfolder=project_subfolder))
        self.open_folder_button.clicked.connect(self._choose_folder)
        self.add_images_button = QPushButton("Add images…")
        self.add_images_button.clicked.connect(self._choose_images)
        row.addWidget(self.open_folder_button)
        row.addWidget(self.add_images_button)
        v.addLayout(row)
        self.project_label = QElidingLabel(say.NO_PROJECT)
        self.project_label.setElideMode(Qt.TextElideMode.ElideLeft)
        v.addWidget(self.project_label)
        self.progress_label = QLabel("")  # "12 / 300 verified"
        self.next_unverified_button = QPushButton("Next unverified ▶")
        self.next_unverified_button.setToolTip(say.TIPS["next_unverified"])
        self.next_unverified_button.clicked.connect(lambda: self.next_unverified_requested.emit())
        row = QHBoxLayout()
        row.addWidget(self.progress_label, 1)
        row.addWidget(self.next_unverified_button)
        v.addLayout(row)
        self.class_progress_label = QLabel("")  # per class: verified share of its pixels
        self.class_progress_label.setWordWrap(True)
        self.class_progress_label.setToolTip(say.TIPS["class_progress"])
        v.addWidget(self.class_progress_label)
        self.filter_combo = NarrowCombo()
        for kind, text in say.REVIEW_FILTERS.items():
            self.filter_combo.addItem(text, kind)
        self.filter_combo.setToolTip(say.TIPS["review_filter"])
        self.filter_combo.currentIndexChanged.connect(lambda _: self._apply_filter())
        self.least_confident_button = QPushButton("Least confident ▶")
        self.least_confident_button.setToolTip(say.TIPS["least_confident"])
        self.least_confident_button.clicked.connect(lambda: self.least_confident_requested.emit())
        row = QHBoxLayout()
        row.addWidget(QLabel("Show"))
        row.addWidget(self.filter_combo, 1)
        row.addWidget(self.least_confident_button)
        v.addLayout(row)
        self.states: list = []  # each row's ImageState (progress lines, filter)
        self._filtered = False  # some rows may be hidden
        self.image_list = QListWidget()
        self.image_list.setMinimumHeight(90)
        self.image_list.setMaximumHeight(160)
        self.image_list.currentRowChanged.connect(self._on_row)
        v.addWidget(self.image_list)
        row = QHBoxLayout()
        self.prev_button = QPushButton("◀ Previous")
        self.next_button = QPushButton("Next ▶")
        self.reviewed_button = QPushButton("Reviewed ✓")
        self.reviewed_button.setToolTip(say.TIPS["reviewed"])
        self.prev_button.clicked.connect(lambda: self.step_requested.emit(-1))
        self.next_button.clicked.connect(lambda: self.step_requested.emit(+1))
        self.reviewed_button.clicked.connect(lambda: self.reviewed_requested.emit())
        self.verify_class_button = QPushButton("Class ✓")
        self.verify_class_button.setToolTip(say.TIPS["verify_class"])
        self.verify_class_button.clicked.connect(lambda: self.verify_class_requested.emit())
        self.unverify_button = QPushButton("Un-verify")
        self.unverify_button.setToolTip(say.TIPS["unverify"])
        self.unverify_button.clicked.connect(lambda: self.unverify_requested.emit(False))
        self.unverify_class_button = QPushButton("Un-verify class")
        self.unverify_class_button.setToolTip(say.TIPS["unverify_class"])
        self.unverify_class_button.clicked.connect(lambda: self.unverify_requested.emit(True))
        self.history_button = QPushButton("History…")
        self.history_button.setToolTip(say.TIPS["history"])
        self.history_button.clicked.connect(lambda: self.history_requested.emit())
        row.addWidget(self.prev_button)
        row.addWidget(self.next_button)
        row.addWidget(self.history_button)
        v.addLayout(row)
        grid = QGridLayout()  # two columns: the dock stays narrow
        for i, b in enumerate((self.reviewed_button, self.verify_class_button, self.unverify_button,
                               self.unverify_class_button)):
            grid.addWidget(b, i // 2, i % 2)
        v.addLayout(grid)
        self.accept_change_button = QPushButton("Image changed on disk: start over on the new content")
        self.accept_change_button.setToolTip(say.TIPS["accept_change"])
        self.accept_change_button.clicked.connect(lambda: self.accept_change_requested.emit())
        self.accept_change_button.setVisible(False)
        self.stale_label = QLabel()  # why the image shows no labels, for as long as it is stale
        self.stale_label.setWordWrap(True)
        self.stale_label.setStyleSheet("color: #e05555;")
        self.stale_label.setVisible(False)
        v.addWidget(self.stale_label)
        v.addWidget(self.accept_change_button)

    def confirm_review(self, image_id: str) -> bool:
        """Ask before Reviewed ✓ marks an image that was never segmented (all background but the strokes)."""
        answer = QMessageBox.question(self, say.REVIEW_UNSEGMENTED_TITLE, say.review_unsegmented(image_id),
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an image folder or a MaskCLIP project")
        if folder:
            self.open_requested.emit(folder)

    def _choose_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add images to the project")
        if files:
            self.add_requested.emit(list(files))

    def _on_row(self, row: int) -> None:
        if not self._updating_list:
            self.image_selected.emit(row)

    def show_project(self, root) -> None:
        self.project_label.setText(str(root))
        self.project_label.setToolTip(str(root))

    def fill(self, states, current_row: int | None) -> None:
        """One row per ImageState; `current_row` selected (without emitting image_selected)."""
        self._updating_list = True
        try:
            self.image_list.clear()
            self.states = list(states)
            self._show_progress()
            for state in self.states:
                item = QListWidgetItem()
                describe_item(item, state)
                self.image_list.addItem(item)
            if current_row is not None:
                self.image_list.setCurrentRow(current_row)
        finally:
            self._updating_list = False
        self._apply_filter()

    def refresh_item(self, row: int, state) -> None:
        item = self.image_list.item(row)
        if item is not None:
            describe_item(item, state)
        if 0 <= row < len(self.states):
            self.states[row] = state
            self._show_progress()
            self._apply_filter(row)

    def _show_progress(self) -> None:
        reviewed = sum(review_kind(state) == "reviewed" for state in self.states)
        self.progress_label.setText(say.progress(reviewed, len(self.states)))

    def show_class_progress(self, progress: dict, colours) -> None:
        """Per class, the share of its pixels verified (progress: name -> (labelled, verified) pixels)."""
        self.class_progress_label.setText(say.class_progress(progress, colours))

    def select_row(self, row: int) -> None:
        """Show `row` as the current image's row (without emitting image_selected)."""
        self._updating_list = True
        self.image_list.setCurrentRow(row)
        self._updating_list = False
        self._apply_filter()

    # --- the status filter ----------------------------------------------------------------------------
    def review_filter(self) -> str:
        return self.filter_combo.currentData()

    def matches_filter(self, row: int) -> bool:
        """Whether the image in `row` is one the status filter shows."""
        wanted = self.review_filter()
        return wanted == "all" or (0 <= row < len(self.states) and review_kind(self.states[row]) == wanted)

    def _apply_filter(self, row: int | None = None) -> None:
        """Hide the rows the filter leaves out (the current image's row stays in sight); row: only that one."""
        if self.review_filter() == "all" and not self._filtered:
            return  # nothing hidden: navigation costs no pass over the rows
        current = self.image_list.currentRow()
        for r in range(len(self.states)) if row is None else (row,):
            self.image_list.setRowHidden(r, r != current and not self.matches_filter(r))
        self._filtered = self.review_filter() != "all"

    def set_state(self, has_project: bool, has_image: bool, stale: bool, can_open: bool) -> None:
        self.add_images_button.setEnabled(has_project)
        for b in (self.prev_button, self.next_button, self.reviewed_button, self.verify_class_button,
                  self.unverify_button, self.unverify_class_button, self.history_button,
                  self.next_unverified_button, self.least_confident_button):
            b.setEnabled(has_image)
        self.accept_change_button.setVisible(has_image and stale)
        self.stale_label.setVisible(has_image and stale)
        self.open_folder_button.setEnabled(can_open)
