"""The MaskCLIP Annotator dock widget.

A thin layer over `maskclip`: the project store (`maskclip.project.Project`) keeps images, classes,
labels and verified pixels; the engine (`maskclip.MaskCLIP`) computes confidences. This module only shows
them as napari layers, turns user actions into project calls, and keeps slow work (model loading, image
encoding, export) in napari worker threads so the viewer never freezes.

Layers it manages (names are stable; the user may hide or restyle them):
- "image": the current image;
- "confidence: <class>": one colour-mapped map per class, hidden until the user toggles it;
- "labels": the editable labels (class i shown as value i + 1, 0 = unlabelled). Paint, fill and erase
  strokes mark the touched pixels verified; every change is autosaved to the project, and Ctrl+Z / Ctrl+Shift+Z
  undo and redo labels and verified pixels together (`_history.EditHistory`).

Reading images and labels (opening a project, moving to another image) runs in a worker too (`_loading`).
Keyboard shortcuts (SHORTCUTS) are napari keybindings on the viewer, the number keys on the labels layer.
"""
from __future__ import annotations

import re
import threading
import time
import weakref
from pathlib import Path

import numpy as np
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible, QElidingLabel, QLabeledDoubleSlider

from maskclip.errors import MaskCLIPError, WeightsUnavailableError
from maskclip.export import FORMATS, export_project
from maskclip.options import DENSE_MODE_NAMES, MODE_DEFAULTS
from maskclip.project import Project
from maskclip.settings import clip_spec, learn_spec, parse_pretrained

from ._class_editor import ClassEditor
from ._history import EditHistory
from ._layers import (
    confidence_colormap,
    from_layer_values,
    labels_colormap,
    labels_features,
    layers_ready,
    to_layer_values,
    warm_up_layers,
)
from ._loading import PROJECT_SUBFOLDER, LoadedImage, OpenedProject, load_image, open_job
from ._saving import EditWriter, SavedEdit, SaveQueue
from ._session import JobResult, Method, ModelChoice, ModelSession, segment_job
from ._training import TrainingSection

DENSE_MODE_LABELS = {"maskclip": "MaskCLIP", "sclip": "SCLIP", "clearclip": "ClearCLIP", "naclip": "NACLIP"}

IMAGE_LAYER = "image"
LABELS_LAYER = "labels"
CONFIDENCE_PREFIX = "confidence: "
AUTOSAVE_MS = 300
REMEMBER_IMAGE_MS = 1000
REDRAW_DEBOUNCE_MS = 120
LAYER_TURN_MS = 20  # between napari layer builds: the viewer repaints and takes input in between
WARM_UP_POLL_MS = 20  # a read that finished before napari's layer warm-up looks again this often
MODELS = ("ViT-B-16", "ViT-B-32", "ViT-L-14", "RN50", "RN101", "maskclip-tiny-vit", "maskclip-tiny-rn")
RANDOM_WEIGHTS = "random (untrained, for testing)"
STATUS_COLOURS = {"unlabelled": "#7f7f7f", "labelled": "#e6a23c", "verified": "#4caf50", "stale": "#e05555"}
# napari keybindings (viewer-wide; none is one of napari's default keys for any layer). The number keys 1-9
# pick classes on the labels layer instead of napari's mode keys, whose letter keys (E, P, F, L, Z) stay.
SHORTCUTS = {
    "next_image": "PageDown",
    "previous_image": "PageUp",
    "segment_current": "G",
    "mark_reviewed": "Shift-R",
    "verify_selected_class": "Shift-C",
    "toggle_key_smoothing": "K",
    "toggle_prompt_denoising": "Shift-D",
}
# the core's command-line phrasing, as the annotator says it
GUI_WORDING = (
    (re.compile(r"; use --device cpu"), ": choose the cpu device under 'Model, weights and device'"),
    (re.compile(r", or --pretrained \S+ on the command line"), ""),
    (re.compile(r" \(or pass overwrite=True / --overwrite\)"), ""),
    (re.compile(r"accept the new content \(Project\.accept_image_change\) to start over"),
     "press 'Image changed on disk: start over on the new content'"),
)


def gui_text(text: str) -> str:
    for pattern, replacement in GUI_WORDING:
        text = pattern.sub(replacement, text)
    return text


def _status_icon(status: str) -> QIcon:
    pix = QPixmap(10, 10)
    pix.fill(QColor(STATUS_COLOURS[status]))
    return QIcon(pix)


class AnnotatorWidget(QWidget):
    """Dock widget: project and image navigation, class editor, model choice, segmentation, export."""

    def __init__(self, napari_viewer):
        super().__init__()
        self._watched_window = None
        self.viewer = napari_viewer
        self.project: Project | None = None
        self.session: ModelSession | None = None
        self.current_id: str | None = None
        self.segmentation = None  # the current image's last Segmentation (confidence layers, hover)
        self.last_redraw_s: float | None = None  # latency of the last in-place (GUI thread) redraw
        self.last_redraw_blocking_s: float | None = None
        self.redraw_count = 0
        self._image: np.ndarray | None = None
        self._verified: np.ndarray | None = None  # the current image's verified mask, edits included
        self._current_stale = False  # the current image's file changed since import (as last read)
        self._recorded: np.ndarray | None = None  # the labels layer's values as of the last recorded edit
        # (project labels, verified) the layer's copy derives from: the merge base of the next save, so a save
        # takes only this annotator's edits and never reverts what other writers committed
        self._base: tuple[np.ndarray, np.ndarray] | None = None
        self._history = EditHistory()
        self._dirty = False  # recorded edits not yet saved
        self._loader = None  # the worker reading a project or an image
        self._load_token = 0  # only the latest request's result is shown
        self._worker = None
        self._worker_kind = ""
        self._job_range = 1  # the running job's image count (the progress bar is busy while the model loads)
        self._job_failed = False
        self._pending_merge: bool | None = None  # a redraw waiting for the running job (merge or not)
        self._conf_visible: dict[str, bool] = {}
        self._updating_list = False

        self._saves = SaveQueue(self)
        self._saves.saved.connect(self._on_saved)
        self._edit_writer = EditWriter()  # used in the save thread only
        self._build_ui()
        self._autosave = QTimer(self, singleShot=True, interval=AUTOSAVE_MS)
        self._autosave.timeout.connect(self.save_current)
        self._redraw_timer = QTimer(self, singleShot=True, interval=REDRAW_DEBOUNCE_MS)
        self._redraw_timer.timeout.connect(self._on_method_changed)
        # the image shown is written to the project once navigation pauses (a project.json write per
        # image would cost every Next its own disk sync)
        self._remember_timer = QTimer(self, singleShot=True, interval=REMEMBER_IMAGE_MS)
        self._remember_timer.timeout.connect(self._remember_image)
        self.viewer.cursor.events.position.connect(self._on_cursor)
        self.viewer.layers.events.inserted.connect(self._keep_image_at_bottom)
        # the image shown is named in the window title, not in a canvas text overlay: each new glyph of
        # napari's overlay costs the GUI thread a GPU pass (~0.4 s for the first text under software OpenGL)
        self._base_title = self.viewer.title
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._flush)
        self._bind_shortcuts()
        self._set_enabled()
        self._show_model_state()
        # napari's first layers cost ~0.5 s of one-time imports: paid now, off the GUI thread
        threading.Thread(target=warm_up_layers, name="maskclip-warm-up", daemon=True).start()
        QTimer.singleShot(0, self._prepare_layers)

    # ============================================================================================
    # UI
    # ============================================================================================
    def _build_ui(self) -> None:
        # the controls scroll instead of being squeezed when the window is short
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self._build_status_box())  # above the scrolled controls: always in sight
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        content = QWidget()
        scroll.setWidget(content)
        outer.addWidget(scroll)
        self._scroll, self._content = scroll, content
        layout = QVBoxLayout(content)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self._build_images_box())
        layout.addWidget(self._build_classes_box())
        layout.addWidget(self._build_maskclip_box())
        self.training = TrainingSection(self)  # MaskCLIP+ training and refine, in child processes
        layout.addWidget(self.training)
        layout.addWidget(self._build_export_box())

        layout.addStretch(1)
        self._load_method_controls(None)

    def _build_status_box(self) -> QWidget:
        """The message line and a busy bar, at the top of the dock where the user looks."""
        box = QWidget()
        v = QVBoxLayout(box)
        v.setContentsMargins(6, 6, 6, 0)
        v.setSpacing(2)
        self.message = QLabel("Open a folder of images to start.")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)  # busy: an indefinite animation
        self.busy_bar.setTextVisible(False)
        self.busy_bar.setMaximumHeight(6)
        policy = self.busy_bar.sizePolicy()
        policy.setRetainSizeWhenHidden(True)  # showing it must not re-lay out the whole dock
        self.busy_bar.setSizePolicy(policy)
        self.busy_bar.setVisible(False)
        # what is under the cursor (class, confidence, verified): one line, so hovering never re-lays out the dock
        self.hover_label = QElidingLabel("")
        v.addWidget(self.message)
        v.addWidget(self.hover_label)
        v.addWidget(self.busy_bar)
        return box

    def _build_images_box(self) -> QGroupBox:
        """Open folder / add images, the image list, navigation and verification."""
        box = QGroupBox("Images")
        v = QVBoxLayout(box)
        row = QHBoxLayout()
        self.open_folder_button = QPushButton("Open folder…")
        self.open_folder_button.setToolTip("Open a folder of images (its project is kept in a "
                                           f"'{PROJECT_SUBFOLDER}' folder inside it) or a project folder")
        self.open_folder_button.clicked.connect(self._choose_folder)
        self.add_images_button = QPushButton("Add images…")
        self.add_images_button.clicked.connect(self._choose_images)
        row.addWidget(self.open_folder_button)
        row.addWidget(self.add_images_button)
        v.addLayout(row)
        self.project_label = QElidingLabel("No project open")
        self.project_label.setElideMode(Qt.TextElideMode.ElideLeft)
        v.addWidget(self.project_label)
        self.image_list = QListWidget()
        self.image_list.setMinimumHeight(90)
        self.image_list.setMaximumHeight(160)
        self.image_list.currentRowChanged.connect(self._on_list_row)
        v.addWidget(self.image_list)
        row = QHBoxLayout()
        self.prev_button = QPushButton("◀ Previous")
        self.next_button = QPushButton("Next ▶")
        self.reviewed_button = QPushButton("Reviewed ✓")
        self.reviewed_button.setToolTip("Verify every pixel of this image: the labels as shown are correct, "
                                        "unlabelled pixels are background")
        self.prev_button.clicked.connect(lambda: self._step(-1, background=True))
        self.next_button.clicked.connect(lambda: self._step(+1, background=True))
        self.reviewed_button.clicked.connect(self.mark_reviewed)
        self.verify_class_button = QPushButton("Class ✓")
        self.verify_class_button.setToolTip("Verify the pixels of the class selected as the labels layer's label "
                                            "(its mask on this image is right as shown)")
        self.verify_class_button.clicked.connect(self.verify_selected_class)
        for b in (self.prev_button, self.next_button, self.reviewed_button, self.verify_class_button):
            row.addWidget(b)
        v.addLayout(row)
        self.accept_change_button = QPushButton("Image changed on disk: start over on the new content")
        self.accept_change_button.setToolTip("Its labels were made for the old content and are not applied. "
                                             "Starting over clears them (they stay in the image's history); "
                                             "restoring the old file brings them back instead.")
        self.accept_change_button.clicked.connect(self.accept_image_change)
        self.accept_change_button.setVisible(False)
        self.stale_label = QLabel()  # why the image shows no labels, for as long as it is stale
        self.stale_label.setWordWrap(True)
        self.stale_label.setStyleSheet("color: #e05555;")
        self.stale_label.setVisible(False)
        v.addWidget(self.stale_label)
        v.addWidget(self.accept_change_button)
        return box

    def _build_classes_box(self) -> QGroupBox:
        """The class editor (names, synonyms, colours, order, background prompts)."""
        box = QGroupBox("Classes")
        v = QVBoxLayout(box)
        self.class_editor = ClassEditor()
        self.class_editor.add_requested.connect(lambda n, s: self._edit_classes("add_class", n, s))
        self.class_editor.remove_requested.connect(lambda n: self._edit_classes("remove_class", n))
        self.class_editor.rename_requested.connect(lambda o, n: self._edit_classes("rename_class", o, n))
        self.class_editor.synonyms_requested.connect(lambda n, s: self._edit_classes("set_class_synonyms", n, s))
        self.class_editor.colour_requested.connect(lambda n, c: self._edit_classes("set_class_colour", n, c))
        self.class_editor.reorder_requested.connect(lambda names: self._edit_classes("reorder_classes", names))
        self.class_editor.background_requested.connect(self._on_background)
        self.class_editor.class_selected.connect(lambda name: self.select_class(self.project.class_index(name)))
        v.addWidget(self.class_editor)
        self.brush_label = QLabel()  # which class the brush paints (napari's label box shows only a number)
        self.brush_label.setToolTip("The labels layer's selected label: select a class row or press 1-9")
        v.addWidget(self.brush_label)
        return box

    def _build_dense_mode_row(self, form: QFormLayout) -> None:
        """The dense mode combo: MaskCLIP or a training-free successor (each with its own KS/PD defaults)."""
        self.dense_mode_combo = QComboBox()
        for mode in DENSE_MODE_NAMES:
            self.dense_mode_combo.addItem(DENSE_MODE_LABELS[mode], mode)
        self.dense_mode_combo.setToolTip(
            "How CLIP's last block makes per-patch features. SCLIP / ClearCLIP / NACLIP (ViT models) give "
            "cleaner masks than MaskCLIP at the same cost; changing it re-encodes the image once")
        self.dense_mode_combo.currentIndexChanged.connect(self._on_dense_mode_changed)
        form.addRow("Dense mode", self.dense_mode_combo)

    def dense_mode(self) -> str:
        return self.dense_mode_combo.currentData() or "maskclip"

    def _on_dense_mode_changed(self, *_):
        """The mode's own KS / PD defaults (the successors' papers use neither), then a redraw."""
        defaults = MODE_DEFAULTS[self.dense_mode()]
        for check, on in ((self.ks_check, defaults.key_smoothing), (self.pd_check, defaults.prompt_denoising)):
            check.blockSignals(True)
            check.setChecked(on)
            check.blockSignals(False)
        self.pd_slider.setEnabled(self.pd_check.isChecked())
        self._schedule_redraw()

    def _build_maskclip_box(self) -> QGroupBox:
        """KS / PD / threshold / scale, Segment image / all / Cancel, and the model choice."""
        box = QGroupBox("MaskCLIP")
        v = QVBoxLayout(box)
        form = QFormLayout()
        toggles = QHBoxLayout()
        self.ks_check = QCheckBox("Key smoothing")
        self.ks_check.setToolTip("Average class probabilities over patches with similar keys (less noise)")
        self.pd_check = QCheckBox("Prompt denoising")
        self.pd_check.setToolTip("Drop classes whose best pixel is below the threshold (fewer stray classes)")
        toggles.addWidget(self.ks_check)
        toggles.addWidget(self.pd_check)
        form.addRow(toggles)
        self._build_dense_mode_row(form)
        self.pd_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.pd_slider.setRange(0.0, 1.0)
        self.pd_slider.setSingleStep(0.05)
        self.pd_slider.setDecimals(2)
        form.addRow("PD threshold", self.pd_slider)
        self.scale_spin = QSpinBox()
        self.scale_spin.setRange(64, 2048)
        self.scale_spin.setSingleStep(16)
        self.scale_spin.setSuffix(" px")
        self.scale_spin.setToolTip("Images are resized to this short side before encoding (336 is a good default)")
        form.addRow("Short side", self.scale_spin)
        form.addRow(self._build_learning_row())
        v.addLayout(form)
        for w in (self.ks_check, self.pd_check):
            w.toggled.connect(self._schedule_redraw)
        self.pd_slider.valueChanged.connect(self._schedule_redraw)
        self.scale_spin.valueChanged.connect(self._schedule_redraw)

        row = QHBoxLayout()
        self.segment_button = QPushButton("Segment image")
        self.segment_button.setToolTip("Segment the current image (verified pixels keep their labels)")
        self.segment_all_button = QPushButton("Segment all")
        self.segment_all_button.setToolTip("Segment every image of the project in the background")
        self.cancel_button = QPushButton("Cancel")
        self.segment_button.clicked.connect(self.segment_current)
        self.segment_all_button.clicked.connect(self.segment_all)
        self.cancel_button.clicked.connect(self.cancel)
        for b in (self.segment_button, self.segment_all_button, self.cancel_button):
            row.addWidget(b)
        v.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        v.addWidget(self.progress)

        model_box = QCollapsible("Model, weights and device")
        inner = QWidget()
        mform = QFormLayout(inner)
        mform.setContentsMargins(0, 0, 0, 0)
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.addItems(MODELS)
        self.model_combo.setToolTip("Any open_clip architecture with a ViT or ModifiedResNet image tower")
        self.weights_combo = QComboBox()
        self.weights_combo.setEditable(True)
        self.weights_combo.addItems(["openai", RANDOM_WEIGHTS])
        self.weights_combo.setToolTip("An open_clip weights tag (downloaded once, then cached) or a local "
                                      "checkpoint file")
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.setToolTip("Choose a local checkpoint file")
        browse.clicked.connect(self._choose_checkpoint)
        wrow = QHBoxLayout()
        wrow.addWidget(self.weights_combo, 1)
        wrow.addWidget(browse)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        self.load_button = QPushButton("Load model")
        self.load_button.clicked.connect(self.load_model)
        mform.addRow("Architecture", self.model_combo)
        mform.addRow("Weights", wrow)
        mform.addRow("Device", self.device_combo)
        mform.addRow(self.load_button)
        model_box.addWidget(inner)
        v.addWidget(model_box)
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        v.addWidget(self.model_label)
        for combo in (self.model_combo, self.weights_combo):
            combo.currentTextChanged.connect(self._on_model_choice_changed)
        self.device_combo.currentTextChanged.connect(self._on_model_choice_changed)
        return box

    def _build_learning_row(self) -> QHBoxLayout:
        """'Learn from corrections' and its weight (maskclip.prototypes)."""
        row = QHBoxLayout()
        self.learn_check = QCheckBox("Learn from corrections")
        self.learn_check.setToolTip("Verified pixels teach every image at once: each class's look in CLIP's "
                                    "feature space (from all verified pixels of the project) is blended "
                                    "with its text prompt")
        self.learn_weight = QDoubleSpinBox()
        self.learn_weight.setRange(0.0, 1.0)
        self.learn_weight.setSingleStep(0.1)
        self.learn_weight.setDecimals(2)
        self.learn_weight.setToolTip("Weight of what was learned from corrections (0 = text only, 1 = looks only "
                                     "among the classes that have corrections)")
        self.learn_check.toggled.connect(self._schedule_redraw)
        self.learn_weight.valueChanged.connect(self._schedule_redraw)
        row.addWidget(self.learn_check)
        row.addWidget(QLabel("weight"))
        row.addWidget(self.learn_weight)
        return row

    def _build_export_box(self) -> QGroupBox:
        """Export format, verified-only and the Export button."""
        box = QGroupBox("Export")
        row = QHBoxLayout(box)
        self.export_format = QComboBox()
        self.export_format.addItems(FORMATS)
        self.export_format.setToolTip("voc: indexed PNGs + image sets; coco: RLE annotations.json; "
                                      "index: one indexed PNG per image + classes.json")
        self.export_verified = QCheckBox("verified only")
        self.export_val = QDoubleSpinBox()
        self.export_val.setRange(0, 50)
        self.export_val.setDecimals(0)
        self.export_val.setSingleStep(5)
        self.export_val.setValue(10)
        self.export_val.setSuffix(" % val")
        self.export_val.setToolTip("Share of the images in the VOC validation split (ImageSets/Segmentation/"
                                   "val.txt; 0 = none). With at least two images, a non-zero share keeps one.")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Choose a folder; a folder that is not empty asks before files are replaced")
        self.export_button.clicked.connect(self._choose_export)
        row.addWidget(self.export_format)
        row.addWidget(self.export_verified)
        row.addWidget(self.export_val)
        row.addWidget(self.export_button)
        return box

    def showEvent(self, event):
        # wide enough for every control once napari's style sheet applies: only vertical scrolling
        bar = self._scroll.verticalScrollBar().sizeHint().width()
        self._scroll.setMinimumWidth(self._content.minimumSizeHint().width() + bar)
        super().showEvent(event)

    def _set_enabled(self) -> None:
        has_project = self.project is not None
        has_image = self.current_id is not None
        busy = self._worker is not None
        self.add_images_button.setEnabled(has_project)
        self.class_editor.setEnabled(has_project)
        for b in (self.prev_button, self.next_button, self.reviewed_button, self.verify_class_button):
            b.setEnabled(has_image)
        stale = has_image and self._current_stale
        self.accept_change_button.setVisible(stale)
        self.stale_label.setVisible(stale)
        self.open_folder_button.setEnabled(self._loader is None or self.current_id is not None)
        self.segment_button.setEnabled(has_image and not busy)
        self.segment_all_button.setEnabled(has_project and not busy)
        self.load_button.setEnabled(not busy)
        self.export_button.setEnabled(has_project and not busy)
        self.cancel_button.setEnabled(busy)
        self.busy_bar.setVisible(self._loader is not None or (busy and self.progress.maximum() == 0))

    def show_message(self, text: str, error: bool = False) -> None:
        """At the top of the dock and in napari's status bar; errors also as a napari notification."""
        text = gui_text(text)
        self.message.setStyleSheet("color: #e05555;" if error else "")
        self.message.setText(text)
        self.viewer.status = text
        if error:
            from napari.utils.notifications import show_error

            show_error(text)

    def message_text(self) -> str:
        return self.message.text()

    def _show_error(self, exc: BaseException) -> None:
        """User-actionable errors show their message; anything else shows its type too (never a traceback)."""
        text = str(exc) if isinstance(exc, MaskCLIPError) else f"{type(exc).__name__}: {exc}"
        self.show_message(text, error=True)

    @property
    def loading(self) -> bool:
        """Whether a project or an image is being read in the background."""
        return self._loader is not None

    # ============================================================================================
    # Opening
    # ============================================================================================
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an image folder or a MaskCLIP project")
        if folder:
            self.open_path(Path(folder), background=True)

    def _choose_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add images to the project")
        if files and self.project is not None:
            try:
                report = self.project.add_images([Path(f) for f in files])
            except MaskCLIPError as exc:
                self._show_error(exc)
                return
            self._fill_image_list()
            unreadable = [(p, r) for p, r in report.skipped if r != "already in the project"]
            present = len(report.skipped) - len(unreadable)
            text = f"Added {len(report.added)} images."
            if present:
                text += f" {present} were already in the project."
            self.show_message(text + self._describe_skipped(unreadable), error=bool(unreadable))

    @staticmethod
    def _describe_skipped(skipped) -> str:
        """The unreadable files by name (the first few) and why."""
        if not skipped:
            return ""
        shown = "; ".join(f"{Path(p).name} ({r})" for p, r in skipped[:3])
        more = f"; and {len(skipped) - 3} more (maskclip project status lists them)" if len(skipped) > 3 else ""
        return f" Skipped {len(skipped)} unreadable files: {shown}{more}."

    def open_path(self, path: Path, project_dir: Path | None = None, classes_file: Path | None = None,
                  background: bool = False) -> bool:
        """Open a project folder, or an image folder (its project is created on first use; a folder without
        images is refused). background=True reads in a worker (the GUI's way: the viewer stays responsive)
        and returns True at once; otherwise it returns when the project shows, False on error."""
        if not background:
            try:
                opened = open_job(Path(path), project_dir, classes_file)
            except MaskCLIPError as exc:
                self._show_error(exc)
                return False
            self._show_opened(opened)
            return True
        self._start_loader(open_job, lambda opened: self._show_opened(opened, split=True), Path(path), project_dir,
                           classes_file, message=f"Opening {Path(path).name}…")
        return True

    def _start_loader(self, job, on_done, *args, message: str) -> None:
        """Run a reading job in a worker; only the latest request's result is shown."""
        from napari.qt.threading import create_worker

        self._load_token += 1
        token = self._load_token
        saves = self._saves

        def read(*job_args):
            saves.wait()  # the edits saved before this read are in what it reads
            return job(*job_args)

        worker = create_worker(read, *args, _ignore_errors=True)

        def done(result):
            if token == self._load_token:
                on_done(result)

        def failed(exc):
            if token == self._load_token:
                self._show_error(exc)
                if self.project is not None and self.current_id in self.project:  # the list shows what is shown
                    self._updating_list = True
                    self.image_list.setCurrentRow(self.project.image_ids.index(self.current_id))
                    self._updating_list = False

        def finished():
            if worker is self._loader:
                self._loader = None
                self._set_enabled()

        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(finished)
        self._loader = worker
        self.show_message(message)
        self._set_enabled()
        worker.start()

    def _show_opened(self, opened: OpenedProject, split: bool = False) -> None:
        self.open_project(opened.project, opened, split=split)

    def _remember_image(self) -> None:
        """Write the image shown as the project's last image (reopening shows it first), in the save thread."""
        self._remember_timer.stop()
        if self.project is None or self.current_id is None:
            return
        project, image_id = self.project, self.current_id
        self._saves.submit("settings", "", lambda: project.update_settings({"annotator": {"last_image": image_id}}))

    def open_project(self, project: Project, opened: OpenedProject | None = None, split: bool = False) -> None:
        self.save_current()
        if self._remember_timer.isActive():
            self._remember_image()
        self.cancel()
        self.project = project
        self.current_id = None
        self.segmentation = None
        self._image = None
        self._remove_confidence_layers()
        self.project_label.setText(str(project.root))
        self.project_label.setToolTip(str(project.root))
        self._load_method_controls(project.settings)
        self._show_model_state()
        self._show_classes()
        self._fill_image_list(opened.states if opened is not None else None)
        note = self._describe_skipped(project.skipped_images)
        self.show_message(f"Opened {project.root.name}: {len(project)} images.{note}", error=bool(note))
        if opened is not None and opened.first is not None:
            self._show_loaded(opened.first, split=split)
        elif len(project):
            last = project.settings.get("annotator", {}).get("last_image")
            self.show_image(last if last in project else project.image_ids[0])
        self.training.set_project(project)
        self._set_enabled()

    # ============================================================================================
    # Settings <-> controls
    # ============================================================================================
    def _load_method_controls(self, settings: dict | None) -> None:
        settings = settings or {}
        method = settings.get("method", {})
        model = settings.get("model", {})
        widgets = (self.ks_check, self.pd_check, self.pd_slider, self.scale_spin, self.dense_mode_combo,
                   self.learn_check, self.learn_weight, self.model_combo, self.weights_combo, self.device_combo)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.ks_check.setChecked(bool(method.get("key_smoothing", True)))
            self.pd_check.setChecked(bool(method.get("prompt_denoising", True)))
            self.pd_slider.setValue(float(method.get("pd_threshold", 0.5)))
            self.scale_spin.setValue(int((method.get("scales") or [336])[0]))
            self.dense_mode_combo.setCurrentIndex(max(0, self.dense_mode_combo.findData(model.get("dense_mode"))))
            learn = learn_spec(settings)
            self.learn_check.setChecked(learn["from_verified"])
            self.learn_weight.setValue(learn["weight"])
            self.model_combo.setCurrentText(model.get("name", "ViT-B-16"))
            weights = model.get("pretrained", "openai")
            self.weights_combo.setCurrentText(RANDOM_WEIGHTS if weights is None else str(weights))
            self.device_combo.setCurrentText(settings.get("annotator", {}).get("device", "auto"))
        finally:
            for w in widgets:
                w.blockSignals(False)
        self.pd_slider.setEnabled(self.pd_check.isChecked())
        self.learn_weight.setEnabled(self.learn_check.isChecked())

    def set_model_choice(self, model: str | None = None, weights: str | None = None, device: str | None = None) -> None:
        """Preset the model controls (launcher options); None keeps the current value."""
        if model:
            self.model_combo.setCurrentText(model)
        if weights:
            self.weights_combo.setCurrentText(weights)
        if device:
            self.device_combo.setCurrentText(device)

    def model_choice(self) -> ModelChoice:
        weights = self.weights_combo.currentText().strip()
        return ModelChoice(name=self.model_combo.currentText().strip() or "ViT-B-16",
                           weights=None if weights in ("", RANDOM_WEIGHTS) else parse_pretrained(weights),
                           device=self.device_combo.currentText())

    def method(self) -> Method:
        p = self.project
        return Method(classes=tuple(tuple(c) for c in p.prompts), background=tuple(p.background),
                      key_smoothing=self.ks_check.isChecked(), prompt_denoising=self.pd_check.isChecked(),
                      pd_threshold=round(float(self.pd_slider.value()), 4), scales=(int(self.scale_spin.value()),),
                      dense_mode=self.dense_mode(), other_options=self._other_options(),
                      learn_weight=self._learn_weight())

    def _learn_weight(self) -> float:
        return round(float(self.learn_weight.value()), 4) if self.learn_check.isChecked() else 0.0

    def _other_options(self) -> tuple:
        """SegmentOptions set in the project's settings (CLI or API) that have no control here; the
        mode-dependent ones only while the project's stored mode is shown."""
        spec = clip_spec(self.project, dense_mode=self.dense_mode())["segment"]
        shown = ("key_smoothing", "prompt_denoising", "pd_threshold")
        return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in spec.items()
                     if k not in shown and k not in ("background", "scales"))

    def _save_settings(self) -> None:
        if self.project is None:
            return
        choice = self.model_choice()
        m = self.method() if self.project.classes else None
        update = {"model": {"name": choice.name, "pretrained": choice.weights, "dense_mode": self.dense_mode()},
                  "annotator": {"device": choice.device}}
        if m is not None:
            update["method"] = {"key_smoothing": m.key_smoothing, "prompt_denoising": m.prompt_denoising,
                                "pd_threshold": m.pd_threshold, "scales": list(m.scales)}
        update["learn"] = {"from_verified": self.learn_check.isChecked(),
                           "weight": round(float(self.learn_weight.value()), 4)}
        try:
            self.project.update_settings(update)
        except MaskCLIPError as exc:
            self._show_error(exc)

    def _on_model_choice_changed(self, *_):
        self._save_settings()
        self._show_model_state()

    def _show_model_state(self) -> None:
        choice = self.model_choice()
        if self.session is not None and self.session.choice == choice:
            where = self.session.model.device
            if self.session.on_cpu:
                text = (f"{choice.describe()} on the CPU (no GPU in use): encoding an image takes seconds; "
                        "redraws of encoded images stay instant.")
            else:
                text = f"{choice.describe()} on {where}."
        else:
            import torch

            device = "the GPU" if choice.device != "cpu" and torch.cuda.is_available() else "the CPU"
            text = f"{choice.describe()}: loads on first use, runs on {device}."
            if device == "the CPU" and choice.device == "auto":
                text += " No GPU found."
        self.model_label.setText(text)

    def _choose_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a CLIP checkpoint",
                                              filter="Checkpoints (*.pt *.pth *.bin *.safetensors);;All files (*)")
        if path:
            self.weights_combo.setCurrentText(path)

    # ============================================================================================
    # Classes
    # ============================================================================================
    def _show_classes(self) -> None:
        p = self.project
        self.class_editor.set_classes(p.classes, p.background)
        if self.current_id is not None and self.labels_layer is not None:
            self.labels_layer.colormap = labels_colormap(p.class_colours)
            self.labels_layer.features = labels_features(p.class_names)

    def _edit_classes(self, method: str, *args) -> None:
        """Apply one class-editor request to the project, then redisplay labels in the new class order."""
        if self.project is None:
            return
        self.save_current(wait=True)
        try:
            getattr(self.project, method)(*args)
        except MaskCLIPError as exc:
            self._show_error(exc)
        else:
            self.show_message(f"Classes: {', '.join(self.project.class_names) or 'none'}.")
        self._show_classes()
        if self.current_id is not None:
            self._reload_labels()
            self._update_confidence_layers()
            if self._has_prediction() and method not in ("set_class_colour", "reorder_classes", "rename_class"):
                self._request_redraw()

    def _on_background(self, prompts: list) -> None:
        if self.project is None or prompts == self.project.background:
            return
        self._edit_classes("set_background", prompts)

    # ============================================================================================
    # Image list and navigation
    # ============================================================================================
    def _fill_image_list(self, states=None) -> None:
        self._updating_list = True
        try:
            self.image_list.clear()
            for state in states if states is not None else self.project.list_images():
                item = QListWidgetItem()
                self._describe_item(item, state)
                self.image_list.addItem(item)
            if self.current_id in self.project:
                self.image_list.setCurrentRow(self.project.image_ids.index(self.current_id))
        finally:
            self._updating_list = False

    @staticmethod
    def _describe_item(item: QListWidgetItem, state) -> None:
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
        item.setIcon(_status_icon(status))
        item.setData(Qt.ItemDataRole.UserRole, state.id)
        item.setToolTip(f"{state.path}\n{state.width}x{state.height}, {status}")

    def _refresh_item(self, image_id: str, state=None) -> None:
        """Redescribe an image's list row (state: its ImageState when already read)."""
        row = self.project.image_ids.index(image_id)
        item = self.image_list.item(row)
        if item is not None:
            self._describe_item(item, state if state is not None else self.project.image_state(image_id))

    def _on_list_row(self, row: int) -> None:
        if self._updating_list or self.project is None or not 0 <= row < len(self.project):
            return
        self.show_image(self.project.image_ids[row], background=True)

    def next_image(self) -> None:
        self._step(+1)

    def previous_image(self) -> None:
        self._step(-1)

    def _step(self, step: int, background: bool = False) -> None:
        if self.project is None or self.current_id is None:
            return
        ids = self.project.image_ids
        self.show_image(ids[(ids.index(self.current_id) + step) % len(ids)], background=background)

    def show_image(self, image_id: str, background: bool = False) -> None:
        """Make `image_id` the current image: its pixels, stored labels and (when cheap) confidences.
        background=True reads the files in a worker (the GUI's way) and shows them when read."""
        self.save_current(wait=not background)
        if background:
            self._updating_list = True
            self.image_list.setCurrentRow(self.project.image_ids.index(image_id))  # the click shows at once
            self._updating_list = False
            self._start_loader(load_image, lambda loaded: self._show_loaded(loaded, split=True), self.project,
                               image_id, message=f"Reading {image_id}…")
            return
        try:
            loaded = load_image(self.project, image_id)
        except MaskCLIPError as exc:
            self._show_error(exc)
            return
        self._show_loaded(loaded)

    def _show_loaded(self, loaded: LoadedImage, split: bool = False) -> None:
        """Show an image read by load_image (on the GUI thread: layer updates only, no disk reads).

        split=True (a worker's result): when napari still has to make the image and labels layers (a few
        hundred milliseconds each here), the labels come one event-loop turn after the image, so the
        viewer repaints and takes input in between.
        """
        p, image_id = self.project, loaded.image_id
        if p is None or image_id not in p:
            return
        if not layers_ready(wait=not split):  # napari's one-time warm-up still runs in its thread
            token = self._load_token
            QTimer.singleShot(WARM_UP_POLL_MS, lambda: token == self._load_token and self._show_loaded(loaded, split))
            return
        self.save_current()  # edits made while it was being read
        new_shape = self._image is None or self._image.shape[:2] != loaded.image.shape[:2]
        first_layers = self.image_layer is None and self.labels_layer is None
        self._set_image_layer(loaded.image)
        if split and first_layers:
            token = self._load_token
            QTimer.singleShot(LAYER_TURN_MS, lambda: token == self._load_token and self._show_labels(loaded, new_shape))
        else:
            self._show_labels(loaded, new_shape)

    def _show_labels(self, loaded: LoadedImage, new_shape: bool) -> None:
        """The rest of _show_loaded: labels, confidence layers, view, list and settings."""
        p, image_id = self.project, loaded.image_id
        if p is None or image_id not in p:
            return
        self.current_id = image_id
        self._image = loaded.image
        self.segmentation = None
        self._verified = loaded.verified
        self._dirty = False
        self._current_stale = loaded.stale_error is not None
        self._set_labels_data(loaded.values, editable=loaded.stale_error is None)
        self._update_confidence_layers()
        if new_shape:
            self.viewer.reset_view()  # after every layer has the new size: the view fits this image
        self._updating_list = True
        self.image_list.setCurrentRow(p.image_ids.index(image_id))
        self._updating_list = False
        self.viewer.title = f"{self._base_title} — {image_id}"
        if loaded.stale_error is not None:
            self.stale_label.setText(gui_text(str(loaded.stale_error)))
            self._show_error(loaded.stale_error)
            self._refresh_item(image_id)  # the list may still show the state from before the change
        elif self.message.text().startswith("Reading "):
            self.show_message(f"{image_id} ({p.image_ids.index(image_id) + 1}/{len(p)}).")
        self._remember_timer.start()
        self._watch_window()
        self._set_enabled()
        if self.session is not None and p.classes and loaded.has_labels:
            self._request_redraw(merge=False)  # confidence maps of an image segmented before

    def _set_image_layer(self, image: np.ndarray) -> None:
        rgb = image.ndim == 3 and image.shape[2] in (3, 4)
        layer = self.image_layer
        if layer is not None and layer.rgb == rgb:
            layer.data = image
            if not rgb or image.dtype != np.uint8:
                layer.reset_contrast_limits()
            if layer.metadata.pop("maskclip_placeholder", False):
                layer.visible = True
            return
        if layer is not None:
            self.viewer.layers.remove(layer)
        layer = self.viewer.add_image(image, name=IMAGE_LAYER, rgb=rgb)
        self.viewer.layers.move(self.viewer.layers.index(layer), 0)

    # ============================================================================================
    # Layers
    # ============================================================================================
    def _keep_image_at_bottom(self, event) -> None:
        """An "image" layer added from outside (the sample data hands it back) goes under the labels."""
        layer = event.value
        if layer.name == IMAGE_LAYER and self.viewer.layers.index(layer) != 0:
            self.viewer.layers.move(self.viewer.layers.index(layer), 0)

    def _layer(self, name: str):
        return self.viewer.layers[name] if name in self.viewer.layers else None

    @property
    def image_layer(self):
        return self._layer(IMAGE_LAYER)

    @property
    def labels_layer(self):
        return self._layer(LABELS_LAYER)

    @property
    def confidence_layers(self) -> dict:
        return {layer.name[len(CONFIDENCE_PREFIX):]: layer for layer in self.viewer.layers
                if layer.name.startswith(CONFIDENCE_PREFIX)}

    def _reload_labels(self) -> None:
        """Show the project's stored labels of the current image (clears the undo history)."""
        try:
            loaded = load_image(self.project, self.current_id)
        except MaskCLIPError as exc:
            self._show_error(exc)
            return
        self._verified = loaded.verified
        self._dirty = False
        self._current_stale = loaded.stale_error is not None
        self._set_labels_data(loaded.values, editable=loaded.stale_error is None)
        if loaded.stale_error is not None:
            self.stale_label.setText(gui_text(str(loaded.stale_error)))

    def _set_labels_data(self, values: np.ndarray, editable: bool = True) -> None:
        """Put values in the labels layer (made on first use); the undo history starts over."""
        p = self.project
        table = (tuple(p.class_names), tuple(p.class_colours))
        layer = self.labels_layer
        if layer is None:
            layer = self._add_labels_layer(values, p.class_names, p.class_colours)
        else:
            if layer.metadata.pop("maskclip_placeholder", False):
                layer.visible = True
            mode = layer.mode
            layer.editable = False  # drops napari's own undo history: it belongs to the previous labels
            layer.data = values
            if layer.metadata.get("maskclip_classes") != table:
                layer.colormap = labels_colormap(p.class_colours)
                layer.features = labels_features(p.class_names)
            layer.editable = editable
            if editable:
                layer.mode = mode
        layer.metadata["maskclip_classes"] = table
        layer.editable = editable  # a stale image's labels are not applied, so they cannot be edited
        self._recorded = np.array(values, copy=True) if editable else None
        self._base = (from_layer_values(values, len(p.classes)), self._verified.copy()) if editable else None
        self._history.clear()
        self.viewer.layers.selection.active = layer
        self._on_selected_label()

    def _add_labels_layer(self, values: np.ndarray, names, colours):
        layer = self.viewer.add_labels(values, name=LABELS_LAYER, opacity=0.55, colormap=labels_colormap(colours),
                                       features=labels_features(names))
        layer.events.paint.connect(self._on_paint)
        layer.events.selected_label.connect(self._on_selected_label)
        self._bind_layer_keys(layer)
        return layer

    @property
    def layers_prepared(self) -> bool:
        """The image and labels layers exist (empty and hidden until a project opens, see _prepare_layers)."""
        return self.image_layer is not None and self.labels_layer is not None

    def _prepare_layers(self) -> None:
        """Make the image and labels layers, hidden and empty, while napari starts: napari takes about
        0.1 s of GUI time per new layer here, which opening a project would otherwise add to its stall.
        One layer per event-loop turn; a project opened first makes them itself."""
        if self.project is not None:
            return
        if not layers_ready(wait=False):
            QTimer.singleShot(WARM_UP_POLL_MS, self._prepare_layers)
            return
        if self.image_layer is None:
            layer = self.viewer.add_image(np.zeros((1, 1, 3), np.uint8), name=IMAGE_LAYER, rgb=True, visible=False)
            layer.metadata["maskclip_placeholder"] = True
            QTimer.singleShot(LAYER_TURN_MS, self._prepare_layers)
        elif self.labels_layer is None:
            layer = self._add_labels_layer(np.zeros((1, 1), np.uint8), [], [])
            layer.editable = False
            layer.visible = False
            layer.metadata["maskclip_placeholder"] = True

    def _remove_confidence_layers(self) -> None:
        for name, layer in self.confidence_layers.items():
            self._conf_visible[name] = layer.visible
            self.viewer.layers.remove(layer)

    def _update_confidence_layers(self) -> None:
        """One colour-mapped image layer per project class, showing the current segmentation.

        Only visible layers receive new data right away; hidden ones are filled when the user shows them,
        so a redraw costs one layer update per visible map, not one per class. The layers are made with the
        first segmentation (before it they would only show zeros, and each napari layer takes a GUI-thread
        turn to make); hidden ones left from a differently sized image get that image's size at once, so
        the view fits the image shown.
        """
        p = self.project
        if p is None or self._image is None:
            self._remove_confidence_layers()
            return
        shape = self._image.shape[:2]
        colours = dict(zip(p.class_names, p.class_colours))
        for name, layer in self.confidence_layers.items():
            if name not in colours:
                self._conf_visible[name] = layer.visible
                self.viewer.layers.remove(layer)
        existing = self.confidence_layers
        for name in p.class_names:
            layer = existing.get(name)
            if layer is None and self.segmentation is None:
                continue
            if layer is None:
                layer = self.viewer.add_image(np.zeros(shape, np.float32), name=CONFIDENCE_PREFIX + name,
                                              colormap=confidence_colormap(name, colours[name]),
                                              contrast_limits=(0, 1), blending="translucent", opacity=0.8,
                                              visible=self._conf_visible.get(name, False))
                layer.metadata["maskclip_colour"] = colours[name]
                layer.events.visible.connect(self._on_confidence_visible)
                if self.labels_layer is not None:  # keep the labels on top
                    layers = self.viewer.layers
                    layers.move(layers.index(layer), layers.index(self.labels_layer))
            elif layer.metadata.get("maskclip_colour") != colours[name]:
                layer.colormap = confidence_colormap(name, colours[name])
                layer.metadata["maskclip_colour"] = colours[name]
            layer.metadata["maskclip_stale"] = True
            if layer.visible:
                self._fill_confidence(layer)
            elif layer.data.shape != shape:
                layer.data = np.zeros(shape, np.float32)
        if self.labels_layer is not None:
            self.viewer.layers.selection.active = self.labels_layer

    def _fill_confidence(self, layer) -> None:
        """Give a confidence layer the current segmentation's map of its class (zeros when there is none)."""
        name = layer.name[len(CONFIDENCE_PREFIX):]
        seg, shape = self.segmentation, self._image.shape[:2]
        if seg is not None and name in seg.class_names and seg.probs.shape[1:] == shape:
            layer.data = seg.probs[seg.class_names.index(name)]
        elif layer.data.shape != shape or layer.data.any():
            layer.data = np.zeros(shape, np.float32)
        layer.metadata["maskclip_stale"] = False

    def _on_confidence_visible(self, event) -> None:
        layer = event.source
        if layer.visible and layer.metadata.get("maskclip_stale") and self._image is not None:
            self._fill_confidence(layer)

    # ============================================================================================
    # Corrections and saving
    # ============================================================================================
    def _on_paint(self, event) -> None:
        """A brush, fill, polygon or erase stroke ended: one undo step; save soon (its pixels are verified).
        napari may announce a stroke before its last pixels are written: the step is taken on the next turn."""
        QTimer.singleShot(0, self._record_edit)
        self._autosave.start()

    def _record_edit(self) -> None:
        """Turn what changed in the labels layer since the last record into one undo step; changed pixels
        become verified (a stroke is a correction; an erased pixel is confirmed background). Every way of
        editing counts (paint, fill, erase, polygon, a script writing to layer.data)."""
        layer = self.labels_layer
        if layer is None or self._recorded is None or layer.data.shape != self._recorded.shape:
            return
        changed = layer.data != self._recorded
        if not changed.any():
            return
        verified = self._verified | changed  # so only changed pixels differ in verified too
        self._history.record(self._recorded, self._verified, layer.data, verified, changed=changed)
        self._recorded = np.array(layer.data, copy=True)
        self._verified = verified
        self._dirty = True

    def save_current(self, source: str = "annotator", wait: bool = False) -> None:
        """Write the current image's recorded edits (labels and verified mask) to the project, in the save
        thread. wait=True returns once every save so far is written: for callers that read the project
        next on this thread (class edits, applying a segmentation, export, training, quitting)."""
        self._autosave.stop()
        self._record_edit()
        if self.project is not None and self.current_id is not None and self._recorded is not None and self._dirty:
            project, image_id, base = self.project, self.current_id, self._base
            labels, verified = from_layer_values(self._recorded, len(project.classes)), self._verified
            self._saves.submit("labels", image_id, lambda: self._edit_writer.write(
                project, image_id, labels, verified, base, source))
            self._base = (labels, verified)  # the next save's edits are relative to this one
            self._dirty = False
        if wait:
            self._saves.wait()

    def _adopt(self, saved: SavedEdit) -> None:
        """Show what other writers committed to the current image while this annotator edited it (another
        process's verified pixels, a newer prediction): their pixels replace the layer's where this annotator
        has not changed them since the save, and join the base of the next save (so they are not taken for
        this annotator's edits)."""
        if self._recorded is None or self._base is None or self._recorded.shape != saved.stored.shape:
            return
        self._record_edit()
        others = (saved.stored != saved.labels) | (saved.stored_verified != saved.verified)
        if not others.any():
            return
        current = from_layer_values(self._recorded, len(self.project.classes))
        mine = (current != saved.labels) | (self._verified != saved.verified)  # edits made since that save
        adopt = others & ~mine
        base_labels, base_verified = self._base
        self._base = (np.where(others, saved.stored, base_labels), np.where(others, saved.stored_verified, base_verified))
        if not adopt.any():
            return
        values = to_layer_values(saved.stored)
        self._recorded = np.where(adopt, values, self._recorded)
        self._verified = np.where(adopt, saved.stored_verified, self._verified)
        layer = self.labels_layer
        if layer is not None and layer.data.shape == values.shape:
            layer.data[adopt] = values[adopt]
            layer.refresh()

    @property
    def has_unsaved_edits(self) -> bool:
        """Edits waiting for the autosave timer or being written."""
        return self._dirty or self._autosave.isActive() or self._saves.pending > 0

    def wait_for_saves(self) -> None:
        """Block until every save so far is written and its result shown (list state, learning, errors)."""
        self._saves.wait()
        QApplication.processEvents()  # delivers the queued `saved` signals

    def _on_saved(self, kind: str, image_id: str, result, error: Exception | None) -> None:
        """A write finished (GUI thread): update the image list and the learned prototypes, or say why not."""
        p = self.project
        if error is not None:
            if kind == "labels" and image_id == self.current_id:
                self._dirty = True  # the edits are still in the layer: the next save tries again
            what = {"labels": f"the labels of {image_id}", "prediction": f"the segmentation of {image_id}",
                    "settings": "the project settings"}[kind]
            self._show_error(error if isinstance(error, MaskCLIPError) else
                             MaskCLIPError(f"Could not save {what}: {error}"))
            return
        if p is None or image_id not in p:
            return
        if kind == "labels" and image_id == self.current_id:
            self._adopt(result)
        self._refresh_item(image_id, result[-1])
        if image_id == self.current_id:
            self._learn_from_current()

    def undo(self) -> None:
        """Undo the last edit of this image (stroke, fill, Reviewed ✓, Class ✓): labels and verified pixels
        go back together, and are saved."""
        self._undo_redo(self._history.undo, "Undone")

    def redo(self) -> None:
        self._undo_redo(self._history.redo, "Redone")

    def _undo_redo(self, apply, done: str) -> None:
        layer = self.labels_layer
        if layer is None or self._recorded is None or self.current_id is None:
            return
        self._record_edit()  # a stroke not yet recorded is the step to undo
        values, verified = np.array(layer.data, copy=True), self._verified.copy()
        if not apply(values, verified):
            self.show_message(f"Nothing to {done[:-2].lower()} on {self.current_id}.")
            return
        layer.data[...] = values
        layer.refresh()
        self._recorded, self._verified, self._dirty = values, verified, True
        self.save_current(source=done.lower())
        self.show_message(f"{done} the last edit of {self.current_id}.")

    def refresh_from_project(self) -> None:
        """Show labels another process wrote (maskclip refine): the image list and the current image."""
        if self.project is None:
            return
        self.save_current(wait=True)
        self._fill_image_list()
        if self.current_id is not None:
            self._reload_labels()

    def accept_image_change(self) -> None:
        """Take the current image's new file content as the project's: its old labels are cleared (they stay
        in the image's history) and the new pixels are shown."""
        image_id = self.current_id
        if image_id is None or not self.project.is_stale(image_id):
            return
        try:
            self.project.accept_image_change(image_id)
        except MaskCLIPError as exc:
            self._show_error(exc)
            return
        self.show_message(f"{image_id}: the new content is the project's; its earlier labels are in its history.")
        self._refresh_item(image_id)
        self.show_image(image_id)

    def mark_reviewed(self) -> None:
        """Verify the whole current image as shown: labelled pixels keep their class, unlabelled ones are
        confirmed background (so an image with none of the classes can be verified too)."""
        self._verify(None)

    def verify_selected_class(self) -> None:
        """Verify the pixels of the class selected in the labels layer's controls (its mask is right as
        shown; painting the same class over it would change no pixel and so verify nothing)."""
        layer = self.labels_layer
        if layer is None or self.project is None:
            return
        index = int(layer.selected_label) - 1
        if not 0 <= index < len(self.project.classes):
            self.show_message("Select a class as the labels layer's label first.", error=True)
            return
        self._verify(index)

    def _verify(self, class_index: int | None) -> None:
        """Verify pixels as one undoable edit."""
        if self.current_id is None or self.labels_layer is None or self._recorded is None:
            return
        self._record_edit()
        values = self._recorded
        if class_index is None:
            verified, source = np.ones(values.shape, bool), "reviewed"
        else:
            verified, source = self._verified | (values == class_index + 1), "verified class"
        if self._history.record(values, self._verified, values, verified):
            self._verified, self._dirty = verified, True
        self.save_current(source=source)  # the list and the learned prototypes follow when it is written
        labelled = int((values > 0).sum())
        if class_index is None:
            self.show_message(f"{self.current_id}: reviewed: {labelled} labelled and {values.size - labelled} "
                              "background pixels verified.")
        else:
            name = self.project.class_names[class_index]
            self.show_message(f"{self.current_id}: the {int((values == class_index + 1).sum())} '{name}' pixels "
                              "verified.")

    # ============================================================================================
    # Brush class and shortcuts
    # ============================================================================================
    def select_class(self, index: int) -> None:
        """Paint with class `index` (0-based): the labels layer's selected label, the class table's row."""
        if self.project is None or not 0 <= index < len(self.project.classes):
            return
        layer = self.labels_layer
        if layer is not None:
            layer.selected_label = index + 1
            if layer.mode in ("pan_zoom", "transform", "picker") and layer.editable:
                layer.mode = "paint"

    def _on_selected_label(self, event=None) -> None:
        layer, p = self.labels_layer, self.project
        if layer is None or p is None:
            return
        index = int(layer.selected_label) - 1
        name = p.class_names[index] if 0 <= index < len(p.classes) else None
        self.class_editor.select_class(name)
        if name is None:
            self.brush_label.setText(f"Brush: label {index + 1} (not a class: select one, or press 1-9)")
        else:
            r, g, b = p.class_colours[index]
            self.brush_label.setText(f"Brush: <span style='color: rgb({r},{g},{b})'>■</span> {name} "
                                     f"(label {index + 1}{', key ' + str(index + 1) if index < 9 else ''})")

    def _on_shortcut(self, name: str) -> None:
        """What a SHORTCUTS key does: the same as its control (navigation reads in a worker)."""
        if name == "next_image":
            self._step(+1, background=True)
        elif name == "previous_image":
            self._step(-1, background=True)
        elif name == "toggle_key_smoothing":
            self.ks_check.toggle()
        elif name == "toggle_prompt_denoising":
            self.pd_check.toggle()
        else:
            getattr(self, name)()

    def _bind_layer_keys(self, layer) -> None:
        """Ctrl+Z / Ctrl+Shift+Z undo and redo labels and verified pixels together; 1-9 pick classes."""
        from app_model.types import KeyCode, KeyMod

        widget = weakref.ref(self)  # the layer must not keep the widget (and its viewer) alive

        def call(method, *args):
            def press(_layer):
                target = widget()
                if target is not None:
                    getattr(target, method)(*args)
            return press

        layer.bind_key(KeyMod.CtrlCmd | KeyCode.KeyZ, call("undo"), overwrite=True)
        layer.bind_key(KeyMod.CtrlCmd | KeyMod.Shift | KeyCode.KeyZ, call("redo"), overwrite=True)
        for n in range(1, 10):
            layer.bind_key(str(n), call("select_class", n - 1), overwrite=True)

    def _bind_shortcuts(self) -> None:
        """SHORTCUTS on the viewer, and in the tooltips of the controls they press. The viewer holds the
        widget only weakly through them (a strong reference kept closed viewers alive)."""
        actions = {
            "next_image": self.next_button,
            "previous_image": self.prev_button,
            "segment_current": self.segment_button,
            "mark_reviewed": self.reviewed_button,
            "verify_selected_class": self.verify_class_button,
            "toggle_key_smoothing": self.ks_check,
            "toggle_prompt_denoising": self.pd_check,
        }
        widget = weakref.ref(self)
        for name, control in actions.items():
            key = SHORTCUTS[name]

            def press(_viewer, name=name):
                target = widget()
                if target is not None:
                    target._on_shortcut(name)

            self.viewer.bind_key(key, press, overwrite=True)
            tip = control.toolTip()
            control.setToolTip(f"{tip} [{key}]" if tip else f"[{key}]")

    def _flush(self) -> None:
        """Write what waits on a timer or in the save thread: the current edits and the image shown."""
        self.save_current(wait=True)
        if self._remember_timer.isActive():
            self._remember_image()

    def _learn_from_current(self) -> None:
        """With 'Learn from corrections' on, the current image's new verified pixels update the class
        prototypes at once (features in memory: a few ms) and the image is redrawn with them; otherwise the
        next segmentation job reads them."""
        method = self.method() if self.project is not None and self.project.classes else None
        if method is None or method.learn_weight == 0 or self.session is None or self._image is None:
            return
        if not self.session.serves(self.model_choice(), self.project.cache_dir):
            return
        try:
            changed = self.session.learn_image(self.project, self.current_id, self._image, method)
        except MaskCLIPError as exc:
            self._show_error(exc)
            return
        if changed and self._has_prediction():
            self._schedule_redraw()

    def hideEvent(self, event):
        self._flush()
        super().hideEvent(event)

    def _watch_window(self) -> None:
        """Watch the viewer's main window (the root of the parent chain) for its Close event: closing napari
        writes what waits on a timer, also when the dock was never shown."""
        root = self
        while root.parent() is not None:
            root = root.parent()
        if root is not self and root is not self._watched_window:
            if self._watched_window is not None:
                self._watched_window.removeEventFilter(self)
            root.installEventFilter(self)
            self._watched_window = root

    def eventFilter(self, obj, event):
        # getattr: napari may tear this widget's Python side down before the window stops sending events
        if obj is getattr(self, "_watched_window", None) and event.type() == QEvent.Type.Close:
            obj.removeEventFilter(self)
            self._watched_window = None
            self._flush()
        return False

    # ============================================================================================
    # Segmentation
    # ============================================================================================
    def _ready_to_segment(self) -> bool:
        if self.project is None or self.current_id is None:
            self.show_message("Open a folder of images first.", error=True)
            return False
        if not self.project.classes:
            self.show_message("Add at least one class (for example: road, car, tree, sky).", error=True)
            return False
        return True

    def segment_current(self) -> None:
        if self._ready_to_segment():
            self._request_redraw()

    def segment_all(self) -> None:
        if not self._ready_to_segment():
            return
        self.save_current(wait=True)
        p = self.project
        states = p.list_images()
        jobs = [(s.id, s.path) for s in states if not s.stale]
        stale = len(states) - len(jobs)
        if stale:
            self.show_message(f"{stale} images changed on disk since import and are skipped.")
        self._start_job(jobs, self.method(), merge=True, kind="Segment all")

    def load_model(self) -> None:
        """Load the chosen model now (otherwise it loads on the first segmentation)."""
        self._start_job([], None, merge=False, kind="Loading")

    def _schedule_redraw(self, *_):
        self.pd_slider.setEnabled(self.pd_check.isChecked())
        self.learn_weight.setEnabled(self.learn_check.isChecked())
        self._redraw_timer.start()

    def _has_prediction(self) -> bool:
        """Whether the current image was segmented (now or in an earlier session): redraws apply to it."""
        return self.current_id is not None and (self.segmentation is not None
                                                or self.project.has_labels(self.current_id))

    def _on_method_changed(self) -> None:
        if self._has_prediction():
            self._request_redraw()
        QTimer.singleShot(0, self._save_settings)  # after the redraw: the new look comes first

    def _request_redraw(self, merge: bool = True) -> None:
        """Recompute the current image: on the GUI thread when cheap (features and prompts cached),
        otherwise in a worker; while another job runs, an expensive redraw waits for it.

        The cheap path is split over two event-loop turns (MaskCLIP's cheap part, then saving and
        showing it) so input is handled in between and neither turn holds the loop for long.
        """
        if self.project is None or self.current_id is None or not self.project.classes:
            return
        method, choice = self.method(), self.model_choice()
        cheap = (self.session is not None and self.session.serves(choice, self.project.cache_dir)
                 and self.session.is_cheap(self._image, method))
        if cheap:
            start = time.perf_counter()
            try:
                seg = self.session.segment(self._image, method)
            except MaskCLIPError as exc:
                self._show_error(exc)
                return
            computed = time.perf_counter() - start
            result = JobResult(self.current_id, seg, 1, 1)
            QTimer.singleShot(0, lambda: self._finish_redraw(result, method, merge, start, computed))
            return
        if self._worker is not None:
            self._pending_merge = bool(self._pending_merge) or merge
            return
        path = self.project.image_path(self.current_id)
        self._start_job([(self.current_id, path)], method, merge=merge,
                        kind="Segment" if merge else "Confidence")

    def _finish_redraw(self, result: JobResult, method: Method, merge: bool, start: float, computed: float) -> None:
        shown = time.perf_counter()
        if self.project is not None and result.image_id in self.project:
            self._apply(result, method, merge)
        end = time.perf_counter()
        self.last_redraw_s = end - start  # from the toggle to the layers showing it
        self.last_redraw_blocking_s = max(computed, end - shown)  # longest the event loop was held
        self.redraw_count += 1

    def _start_job(self, images, method: Method | None, merge: bool, kind: str) -> None:
        from napari.qt.threading import create_worker

        if self._worker is not None:
            self.show_message("Busy: wait for the running job or cancel it.", error=True)
            return
        choice = self.model_choice()
        cache_dir = self.project.cache_dir if self.project is not None else None
        project = self.project
        worker = create_worker(segment_job, self.session, choice, cache_dir, images, method, project, merge,
                               _ignore_errors=True)
        worker.yielded.connect(lambda value: self._on_job_yield(value, project, method, merge))
        worker.errored.connect(self._on_job_error)
        worker.finished.connect(lambda: self._on_job_finished(worker))
        self._worker, self._worker_kind, self._job_failed = worker, kind, False
        self._job_range = max(len(images), 1)
        self.progress.setRange(0, self._job_range)
        self.progress.setValue(0)
        self.progress.setFormat(f"{kind}: %v/%m")
        self._set_enabled()
        worker.start()

    def _on_job_yield(self, value, project, method, merge) -> None:
        if isinstance(value, str):
            self.show_message(value)
            if value.startswith("Loading "):  # the model load gives no progress: a busy bar until it ends
                self.progress.setRange(0, 0)
                self.progress.setFormat("Loading model…")
                self._set_enabled()
        elif isinstance(value, ModelSession):
            self.session = value
            self._show_model_state()
            self.show_message(f"Loaded {value.choice.describe()}.")
            self.progress.setRange(0, max(self._job_range, 1))
            self.progress.setFormat(f"{self._worker_kind}: %v/%m")
            self._set_enabled()
        elif isinstance(value, JobResult):
            self.progress.setValue(value.done)
            if project is self.project and value.image_id in project:
                self._apply(value, method, merge)

    def _on_job_error(self, exc: BaseException) -> None:
        self._job_failed = True
        self._show_error(exc)
        if isinstance(exc, WeightsUnavailableError):
            self.message.setText(self.message.text() + "\n\nIn the annotator: open 'Model, weights and device' "
                                 "and choose a local checkpoint file with the … button.")
            self.model_label.setText(f"{self.model_label.text()} Could not load: see the message at the top.")

    def _on_job_finished(self, worker) -> None:
        if worker is not self._worker:
            return
        self._worker = None
        if self.progress.maximum() == 0:  # ended during the model load or an export
            self.progress.setRange(0, max(self._job_range, 1))
            self.progress.setFormat(f"{self._worker_kind}: %v/%m")
        self._set_enabled()
        if worker.abort_requested:
            self.show_message(f"{self._worker_kind}: cancelled.")
        elif not self._job_failed and self._worker_kind != "Export":
            self.progress.setValue(self.progress.maximum())
            self.show_message(f"{self._worker_kind}: done.")
        if self._pending_merge is not None:
            merge, self._pending_merge = self._pending_merge, None
            self._request_redraw(merge=merge)

    def cancel(self) -> None:
        """Stop the running job after the image in progress."""
        if self._worker is not None:
            self._worker.quit()
            self.show_message(f"{self._worker_kind}: cancelling after the current image…")

    def _apply(self, result: JobResult, method: Method, merge: bool) -> None:
        """Show a segmentation if it is of the current image and, with merge, store it (verified pixels
        win). Stores happen off the GUI thread: a job's worker stores its own results; a redraw made on the
        GUI thread is stored by the save thread, after the edits queued before it."""
        image_id, seg = result.image_id, result.segmentation
        if result.merge_error is not None:
            self._show_error(result.merge_error)
            return
        if result.stored:
            self._refresh_item(image_id)
        if image_id != self.current_id:
            return
        if method != self.method():
            # settings changed while it ran: redo (now cheap) when the job ends
            self._pending_merge = bool(self._pending_merge) or merge
            return
        self.segmentation = seg
        if merge:
            self.save_current()  # strokes made while it ran: written over the prediction, as verified pixels
            if not result.stored:
                project = self.project
                self._saves.submit("prediction", image_id, lambda: (project.merge_prediction(
                    image_id, seg.labels, class_names=seg.class_names, source="maskclip"), project.image_state(image_id)))
            # what the project holds once the writes are done: the prediction under every pixel not verified
            values = to_layer_values(self.project.project_labels(seg.labels, seg.class_names))
            if self._recorded is not None and self._recorded.shape == values.shape:
                values = np.where(self._verified, self._recorded, values)
            self._set_labels_data(values)
        self._update_confidence_layers()

    # ============================================================================================
    # Hover and export
    # ============================================================================================
    def _on_cursor(self, event=None) -> None:
        layer = self.labels_layer
        if layer is None or self.project is None or self.current_id is None:
            return
        r, c = (int(round(v)) for v in layer.world_to_data(self.viewer.cursor.position)[-2:])
        h, w = layer.data.shape
        if not (0 <= r < h and 0 <= c < w):
            text = self.current_id
        else:
            value = int(layer.data[r, c])
            names = self.project.class_names
            name = names[value - 1] if 0 < value <= len(names) else "unlabelled"
            parts = [name]
            seg = self.segmentation
            if seg is not None and seg.probs.shape[1:] == (h, w):
                if name in seg.class_names:
                    parts.append(f"confidence {seg.probs[seg.class_names.index(name), r, c]:.2f}")
                best = int(seg.probs[:, r, c].argmax())
                if seg.class_names[best] != name:
                    parts.append(f"MaskCLIP: {seg.class_names[best]} {seg.probs[best, r, c]:.2f}")
            if self._verified is not None and self._verified.shape == (h, w) and self._verified[r, c]:
                parts.append("verified")
            text = " · ".join(parts)
        self.hover_label.setText(text)

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
        self.export(out, self.export_format.currentText(), self.export_verified.isChecked(), overwrite=overwrite)

    def _ask_overwrite(self, out: Path) -> str:
        """'overwrite', 'another' (choose another folder) or 'cancel'."""
        box = QMessageBox(QMessageBox.Icon.Question, "Export folder is not empty", f"{out} is not empty.",
                          parent=self)
        box.setInformativeText("Replace the files this export writes there (other files stay as they are), "
                               "or choose another folder?")
        replace = box.addButton("Replace files", QMessageBox.ButtonRole.AcceptRole)
        another = box.addButton("Choose another folder…", QMessageBox.ButtonRole.ActionRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setObjectName("maskclip-export-overwrite")
        box.exec_()
        clicked = box.clickedButton()
        return "overwrite" if clicked is replace else "another" if clicked is another else "cancel"

    def export(self, out: Path, fmt: str, verified_only: bool = False, overwrite: bool = False,
               val_fraction: float | None = None):
        """Export the project in a worker (a fresh Project instance reads the committed files). Returns it.
        val_fraction: the VOC validation share (default: the export box's setting)."""
        from napari.qt.threading import create_worker

        if self.project is None or self._worker is not None:
            return None
        self.save_current(wait=True)
        root = self.project.root
        val = self.export_val.value() / 100 if val_fraction is None else val_fraction

        def run():
            return export_project(Project.open(root), out, fmt, verified_only=verified_only, val_fraction=val,
                                  overwrite=overwrite)

        worker = create_worker(run, _ignore_errors=True)
        worker.returned.connect(lambda report: self._show_export(report, fmt, out))
        worker.errored.connect(self._on_job_error)
        worker.finished.connect(lambda: self._on_job_finished(worker))
        self._worker, self._worker_kind, self._job_failed = worker, "Export", False
        self.progress.setRange(0, 0)
        self.show_message(f"Exporting {fmt} to {out}…")
        self._set_enabled()
        worker.start()
        return worker

    def _show_export(self, report, fmt: str, out: Path) -> None:
        text = f"Exported {len(report.exported)} images as {fmt} to {out}."
        if fmt == "voc":
            text += f" Split: {len(report.splits['train'])} train, {len(report.splits['val'])} val."
        if report.skipped:
            shown = "; ".join(f"{image_id} ({reason})" for image_id, reason in report.skipped[:3])
            more = f"; and {len(report.skipped) - 3} more" if len(report.skipped) > 3 else ""
            text += f" Skipped {len(report.skipped)}: {shown}{more}."
        self.show_message(text, error=bool(report.skipped))
