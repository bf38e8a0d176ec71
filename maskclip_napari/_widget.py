"""The MaskCLIP Annotator dock widget: a composition of panels over the project and the engine.

A thin layer over `maskclip`: the project store (`maskclip.project.Project`) keeps images, classes, labels
and verified pixels; the engine (`maskclip.MaskCLIP`, through `_session.ModelSession`) computes confidences.
The widget composes and connects:

- panels (`panels/`): status (top), images, classes, method, training, export; they talk upward by Qt
  signals and never import this module;
- `_navigation.Navigator`: the current project and image: opening, the image list, moving between images,
  showing one (reads in a worker through `_jobs.Loader` and `_loading`);
- `editing.EditState`: the current image's edits (recorded layer values, verified mask, merge base, undo);
- `_layer_manager.LayerManager`: the "image", "labels" and "confidence: <class>" layers, the hover text;
- `_segmenting.Segmenter`: redraws and jobs (model load, segmentation, export) in a worker (`_jobs`),
  learning from corrections;
- `_edit_saving.EditSaver`: autosave of the edits, adopting other writers' pixels, undo/redo and
  verification, over `_saving.SaveQueue` (label, prediction and settings writes in one background thread);
- `_shortcuts`: keyboard shortcuts; `_window.CloseWatcher`: napari's Close; `_wording`: what it says.

Paint, fill and erase strokes on the labels layer mark the touched pixels verified; every change is
autosaved, and Ctrl+Z / Ctrl+Shift+Z undo and redo labels and verified pixels together.
"""
from __future__ import annotations

import threading
from pathlib import Path

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QApplication, QFrame, QScrollArea, QVBoxLayout, QWidget

from maskclip.errors import MaskCLIPError
from maskclip.project import Project

from . import _wording as say
from ._layer_manager import LayerManager
from ._edit_saving import EditSaver
from ._jobs import Loader
from ._run_commands import usable_devices
from ._segmenting import Segmenter
from ._layers import warm_up_layers
from ._loading import PROJECT_SUBFOLDER, OpenedProject
from ._navigation import Navigator
from ._session import BACKGROUND_TAUGHT, Method, ModelChoice
from ._shortcuts import (SHORTCUT_CONTROLS, bind_layer_keys, bind_viewer_shortcuts, bind_window_shortcuts,
                         run_shortcut)
from ._window import CloseWatcher
from .editing import EditState
from .panels.classes import ClassesPanel
from .panels.export import ExportPanel
from .panels.images import ImagesPanel
from .panels._narrow import foldable
from .panels.legend import LegendPanel
from .panels.review import ReviewPanel
from ._review import ReviewTools
from ._wand_tool import WandTool
from .panels.method import MethodPanel
from .panels.status import StatusPanel
from .panels.training import TrainingPanel

REDRAW_DEBOUNCE_MS = 120

# the panels' controls, also reachable as the widget's attributes (scripts, tests and the README use them)
CONTROLS = {
    "status": ("message", "hover_label", "busy_bar"),
    "images": ("open_folder_button", "add_images_button", "project_label", "image_list", "prev_button",
               "next_button", "reviewed_button", "verify_class_button", "unverify_button",
               "unverify_class_button", "history_button", "next_unverified_button",
               "least_confident_button", "filter_combo", "progress_label", "class_progress_label",
               "accept_change_button", "stale_label"),
    "review_panel": ("unsure_check", "unsure_threshold", "next_region_button", "keys_button", "wand_button",
                     "similarity_slider", "apply_wand_button", "discard_wand_button"),
    "classes": ("class_editor", "brush_label"),
    "method_panel": ("ks_check", "pd_check", "pd_slider", "scale_spin", "dense_mode_combo", "learn_check",
                     "learn_weight", "segment_button", "segment_all_button", "cancel_button", "progress",
                     "model_combo", "weights_combo", "device_combo", "load_button", "model_label"),
    "export_panel": ("export_format", "export_verified", "export_val", "export_button"),
}


def _part(part: str, name: str, doc: str = "", settable: bool = False) -> property:
    """A widget attribute that is one of its parts' (`self.<part>.<name>`)."""
    def get(self):
        return getattr(getattr(self, part), name)

    def set_(self, value):
        setattr(getattr(self, part), name, value)

    return property(get, set_ if settable else None, doc=doc or None)


class AnnotatorWidget(QWidget):
    """Dock widget: project and image navigation, class editor, model choice, segmentation, training, export.

    Public state: `project`, `current_id`, `session` (the loaded model), `segmentation` (the current image's
    last Segmentation), `edits` (the current image's `EditState`: `edits.verified` is its verified mask),
    `busy` (a job runs), `loading` (a read runs), `has_unsaved_edits`, `autosave_pending`, and the layers
    (`image_layer`, `labels_layer`, `confidence_layers`).
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self._close_watch = CloseWatcher(self, self._flush)
        self.viewer = napari_viewer
        # the current image's edits, their autosave and the save thread
        self.editor = EditSaver(lambda: (self.project, self.current_id, self.labels_layer), self)
        self.edits: EditState = self.editor.edits
        self._saves = self.editor.saves  # also writes predictions and settings, in order with the edits
        self.editor.message.connect(self.show_message)
        self.editor.failed.connect(self._show_error)
        self.editor.written.connect(self._on_written)
        self.loader = Loader(self._saves.wait)
        self.layers = LayerManager(napari_viewer, current=lambda: (self.segmentation, self._image),
                                   on_labels_layer=self._on_labels_layer)
        self._build_ui()
        # the current image: opening, navigation, showing (project, current_id, image, segmentation)
        self.nav = Navigator(napari_viewer, self.images, self.status, self.layers, self.loader, self.editor, self)
        self.nav.message.connect(self.show_message)
        self.nav.failed.connect(self._show_error)
        self.nav.state_changed.connect(self._set_enabled)
        self.nav.open_ready.connect(self.open_project)
        self.nav.labels_reset.connect(self._on_selected_label)
        self.nav.image_shown.connect(self._on_image_shown)
        # review tools on the current image: the low-confidence overlay, Next unsure region
        self.review = ReviewTools(napari_viewer, self.layers, self.review_panel, lambda: (
            self.project, self.current_id, self.segmentation, self.edits.verified), self)
        self.review.message.connect(self.show_message)
        self.review_panel.keys_requested.connect(self.show_keys)
        self.keys_dialog = None  # panels.keys.KeysDialog, made when first asked for
        # the class legend beside the canvas (docked with the first project's classes)
        self.legend = LegendPanel()
        self.legend.hidden_changed.connect(self.layers.set_hidden_classes)
        self.legend.only_brush_changed.connect(self._show_only_brush)
        self._legend_docked = False
        self.nav.image_shown.connect(self.review.image_changed)
        self.nav.segmentation_shown.connect(self.review.refresh)
        self.wand = WandTool(self.layers, self.review_panel, self.editor, lambda: (
            self.project, self.current_id, self._image, self.session, self.method() if self.project else None), self)
        self.wand.message.connect(self.show_message)
        self.nav.image_shown.connect(self.wand.image_changed)
        self._connect_panels()
        # segmentation: cheap redraws on the GUI thread, jobs (model load, segment, export) in a worker
        self.segmenter = Segmenter(lambda: (self.project, self.current_id, self._image), self.method,
                                   self.model_choice, self.nav.show_segmentation, self.progress, self,
                                   label_source=lambda: self.nav.label_source)
        self.segmenter.stored.connect(self.nav.refresh_item)
        self.segmenter.message.connect(self.show_message)
        self.segmenter.failed.connect(self._show_error)
        self.segmenter.state_changed.connect(self._set_enabled)
        self.segmenter.session_loaded.connect(self._on_session_loaded)
        self.segmenter.weights_unavailable.connect(self._on_weights_unavailable)
        self.segmenter.taught.connect(self._show_taught)
        self._redraw_timer = QTimer(self, singleShot=True, interval=REDRAW_DEBOUNCE_MS)
        self._redraw_timer.timeout.connect(self._on_method_changed)
        self.viewer.cursor.events.position.connect(self._on_cursor)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._flush)
        bind_viewer_shortcuts(self.viewer, self,
                              {name: getattr(self, attr) for name, attr in SHORTCUT_CONTROLS.items()})
        self._window_shortcuts: list = []  # made once the dock is in its window (showEvent)
        self._set_enabled()
        self.method_panel.show_model_state(self.session)
        # napari's first layers cost ~0.5 s of one-time imports: paid now, off the GUI thread
        threading.Thread(target=warm_up_layers, name="maskclip-warm-up", daemon=True).start()
        QTimer.singleShot(0, self.nav.prepare_layers)

    # === Composition =============================================================================
    def _build_ui(self) -> None:
        # the controls scroll instead of being squeezed when the window is short
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.status = StatusPanel()
        outer.addWidget(self.status)  # above the scrolled controls: always in sight
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        content = QWidget()
        scroll.setWidget(content)
        outer.addWidget(scroll)
        self._scroll, self._content = scroll, content
        self.images = ImagesPanel(PROJECT_SUBFOLDER)
        self.review_panel = ReviewPanel()
        self.classes = ClassesPanel()
        self.method_panel = MethodPanel()
        self.training = TrainingPanel(self.model_choice)  # MaskCLIP+ training and refine, in child processes
        self.export_panel = ExportPanel()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(6, 6, 6, 6)
        for panel in (self.images, self.review_panel, self.classes, self.method_panel):
            layout.addWidget(panel)
        self.sections = {"training": foldable(self.training), "export": foldable(self.export_panel)}
        for section in self.sections.values():  # a user may fold them away (expanded at first)
            layout.addWidget(section)
        layout.addStretch(1)
        for panel, names in CONTROLS.items():
            for name in names:
                setattr(self, name, getattr(getattr(self, panel), name))
        self.method_panel.load_settings(None)

    def _connect_panels(self) -> None:
        im, cl, me = self.images, self.classes, self.method_panel
        im.open_requested.connect(lambda folder: self.open_path(Path(folder), background=True))
        im.add_requested.connect(self.add_images)
        im.image_selected.connect(self.nav.on_list_row)
        im.step_requested.connect(lambda step: self.nav.step(step, background=True))
        im.reviewed_requested.connect(self.mark_reviewed)
        im.verify_class_requested.connect(self.verify_selected_class)
        im.unverify_requested.connect(self.editor.unverify)
        im.history_requested.connect(self.nav.show_revisions)
        im.next_unverified_requested.connect(self.nav.next_unverified)
        im.least_confident_requested.connect(self.nav.next_least_confident)
        im.accept_change_requested.connect(self.accept_image_change)
        cl.edit_requested.connect(lambda method, args: self.edit_classes(method, *args))
        cl.background_requested.connect(self._on_background)
        cl.class_selected.connect(lambda name: self.select_class(self.project.class_index(name)))
        me.changed.connect(self._schedule_redraw)
        me.learn_check.toggled.connect(self._show_taught)
        me.model_changed.connect(self._on_model_choice_changed)
        me.segment_requested.connect(self.segment_current)
        me.segment_all_requested.connect(self.segment_all)
        me.cancel_requested.connect(self.cancel)
        me.load_requested.connect(self.load_model)
        self.training.save_requested.connect(lambda: self.save_current(wait=True))
        self.training.labels_changed.connect(self.refresh_from_project)
        self.training.said.connect(self.show_message)
        self.export_panel.export_requested.connect(
            lambda out, fmt, verified, overwrite: self.export(out, fmt, verified, overwrite=overwrite))

    @property
    def scroll_area(self) -> QScrollArea:
        """The scrolled part of the dock (every panel but the status lines at the top)."""
        return self._scroll

    def showEvent(self, event):
        # wide enough for every control once napari's style sheet applies: only vertical scrolling
        bar = self._scroll.verticalScrollBar().sizeHint().width()
        self._scroll.setMinimumWidth(self._content.minimumSizeHint().width() + bar)
        if not self._window_shortcuts and self.window() is not self:
            # the same keys wherever focus is inside the viewer's window (napari's only see the canvas's)
            self._window_shortcuts = bind_window_shortcuts(self.window(), self, self)
        super().showEvent(event)

    def _set_enabled(self) -> None:
        has_project = self.project is not None
        has_image = self.current_id is not None
        busy = self.busy
        self.images.set_state(has_project, has_image, self.edits.stale, not self.loading or has_image)
        self.review_panel.set_state(has_image)
        self.class_editor.setEnabled(has_project)
        self.method_panel.set_job_state(has_image and not busy, has_project and not busy, busy)
        self.export_button.setEnabled(has_project and not busy)
        # the method's settings are the project's: changed while the first project is being read, they would
        # be replaced by its settings when it shows
        self.method_panel.setEnabled(has_project or not self.loading)
        self.busy_bar.setVisible(self.loading or (busy and self.progress.maximum() == 0))

    def show_message(self, text: str, error: bool = False) -> None:
        """At the top of the dock and in napari's status bar; errors also as a napari notification."""
        text = say.gui_text(text)
        self.status.show_message(text, error)
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

    # state of the parts, readable here (scripts, tests and the README use these names)
    loading = _part("loader", "busy", "Whether a project or an image is being read in the background.")
    busy = _part("segmenter", "busy", "Whether a job (model load, segmentation, export) runs in a worker.")
    session = _part("segmenter", "session", "The loaded model (None until one is loaded).")
    redraw_count = _part("segmenter", "redraw_count", "How many redraws ran on the GUI thread (cheap ones).")
    last_redraw_s = _part("segmenter", "last_redraw_s", "Latency of the last GUI-thread redraw.")
    last_redraw_blocking_s = _part("segmenter", "last_redraw_blocking_s",
                                   "The longest the event loop was held by the last GUI-thread redraw.")
    image = _part("nav", "image", "The current image's pixels (None before one is shown).")
    _image = image
    image_layer = _part("layers", "image_layer")
    labels_layer = _part("layers", "labels_layer")
    confidence_layers = _part("layers", "confidence_layers")
    autosave_pending = _part("editor", "autosave_pending", "Whether an edit waits for the autosave timer.")
    has_unsaved_edits = _part("editor", "unsaved", "Edits waiting for the autosave timer or being written.")
    # the current image lives in the navigator; read and written through here
    project = _part("nav", "project", settable=True)
    current_id = _part("nav", "current_id", settable=True)
    segmentation = _part("nav", "segmentation", "The current image's last Segmentation.", settable=True)

    @property
    def _worker(self):  # the running job's worker, for scripts/screenshot_*.py (use `busy`)
        return self.segmenter.jobs.worker

    @property
    def layers_prepared(self) -> bool:
        """The image and labels layers exist (empty and hidden until a project opens, see Navigator.prepare_layers)."""
        return self.image_layer is not None and self.labels_layer is not None

    def _on_labels_layer(self, layer) -> None:
        layer.events.paint.connect(self.editor.on_paint)
        layer.events.touched.connect(self.editor.on_paint)  # a stroke that only confirmed pixels (_stroke_layer)
        layer.events.selected_label.connect(self._on_selected_label)
        bind_layer_keys(layer, self)

    # === Opening =================================================================================
    def add_images(self, files) -> None:
        """Add image files to the project (the 'Add images…' button)."""
        self.nav.add_images(files)

    def open_path(self, path: Path, project_dir: Path | None = None, classes_file: Path | None = None,
                  background: bool = False) -> bool:
        """Open a project or image folder (`Navigator.open_path`); background=True reads in a worker."""
        return self.nav.open_path(path, project_dir, classes_file, background)

    def open_project(self, project: Project, opened: OpenedProject | None = None, split: bool = False) -> None:
        self.save_current()
        self.nav.remember_now()
        self.cancel()
        self.nav.set_project(project)
        if self.session is not None:
            self.session.corrections_changed(other_project=True)  # learned from another project's pixels
        self.method_panel.load_settings(project.settings)
        self.method_panel.show_model_state(self.session)
        self.show_classes()
        self._show_taught()
        self.nav.show_project(opened, split)
        self.training.set_project(project)
        self._set_enabled()

    # === Settings, model and classes =============================================================
    def set_model_choice(self, model: str | None = None, weights: str | None = None, device: str | None = None) -> None:
        """Preset the model controls (launcher options); None keeps the current value."""
        self.method_panel.set_model_choice(model, weights, device)

    def model_choice(self) -> ModelChoice:
        return self.method_panel.model_choice()

    def dense_mode(self) -> str:
        return self.method_panel.dense_mode()

    def method(self) -> Method:
        return self.method_panel.method(self.project)

    def _save_settings(self) -> None:
        if self.project is None:
            return
        try:
            self.project.update_settings(self.method_panel.settings_update(self.project))
        except MaskCLIPError as exc:
            self._show_error(exc)

    def _on_session_loaded(self) -> None:
        self.method_panel.show_model_state(self.session)
        self.training.set_devices(usable_devices())  # torch is imported now: cuda is offered only if usable

    def _on_model_choice_changed(self, *_):
        self._save_settings()
        self.method_panel.show_model_state(self.session)

    def show_classes(self) -> None:
        """Show the project's classes in the class editor and the labels layer."""
        p = self.project
        self.classes.show_classes(p.classes, p.background)
        self.nav.show_class_progress()
        self.legend.show_classes(p.class_names, p.class_colours, self.layers.hidden_classes)
        if not self._legend_docked and hasattr(self.viewer, "window"):
            self.viewer.window.add_dock_widget(self.legend, area="left", name=say.LEGEND_TITLE)
            self._legend_docked = True
        if self.current_id is not None and self.labels_layer is not None:
            self.layers.set_label_classes(p.class_names, p.class_colours)

    _show_classes = show_classes  # for scripts/screenshot_*.py

    def edit_classes(self, method: str, *args) -> None:
        """Apply one class edit (a `Project` method and its arguments, as the class editor requests it),
        then redisplay labels in the new class order."""
        if self.project is None:
            return
        self.save_current(wait=True)
        self.edits.forget_histories()  # recorded values name classes by index: undo steps would mislabel
        try:
            getattr(self.project, method)(*args)
        except MaskCLIPError as exc:
            self._show_error(exc)
            changed = False
        else:
            self.show_message(say.classes_now(self.project.class_names))
            changed = True
        self.show_classes()
        if self.current_id is not None:
            self.nav.reload_labels()
            self.nav.update_confidence_layers()
            if changed and method not in ("set_class_colour", "reorder_classes", "rename_class"):
                self._apply_setting()  # a refused edit keeps its error on the line

    def _on_background(self, prompts: list) -> None:
        if self.project is None or prompts == self.project.background:
            return
        self.edit_classes("set_background", prompts)

    def select_class(self, index: int) -> None:
        """Paint with class `index` (0-based): the labels layer's selected label, the class table's row."""
        if self.project is None or not 0 <= index < len(self.project.classes):
            return
        self.layers.select_label(index + 1)

    def _on_selected_label(self, event=None) -> None:
        layer, p = self.labels_layer, self.project
        if layer is None or p is None:
            return
        index = int(layer.selected_label) - 1
        name = p.class_names[index] if 0 <= index < len(p.classes) else None
        self.classes.show_brush(index, name, p.class_colours[index] if name is not None else None)

    def _show_only_brush(self, only: bool) -> None:
        if self.labels_layer is not None:
            self.labels_layer.show_selected_label = only

    def no_new_label(self) -> None:
        """napari's M (a new label) would paint a label that is no class: say how to pick one instead."""
        self.show_message(say.NO_NEW_LABEL)

    def on_shortcut(self, name: str) -> None:
        """What a SHORTCUTS key does: the same as its control (`_shortcuts.run_shortcut`); before a project
        shows (napari still starting, the folder still being read) it says why nothing happens."""
        if self._project_shown():
            run_shortcut(self, name)

    def _project_shown(self, error: bool = False) -> bool:
        """Whether a project is open; if not, says so (still opening one, or none opened yet: an error when
        `error`)."""
        if self.project is not None:
            return True
        self.show_message(say.STILL_OPENING if self.loading else say.OPEN_FIRST, error=error and not self.loading)
        return False

    # === Image list and navigation ===============================================================
    def next_image(self) -> None:
        self.nav.step(+1)

    def previous_image(self) -> None:
        self.nav.step(-1)

    def next_unverified(self) -> None:
        self.nav.next_unverified()

    def next_least_confident(self) -> None:
        self.nav.next_least_confident()

    def show_image(self, image_id: str, background: bool = False) -> None:
        """Make `image_id` the current image (`Navigator.show_image`); background=True reads in a worker."""
        self.nav.show_image(image_id, background)

    def _on_image_shown(self, has_labels: bool) -> None:
        self._close_watch.watch()  # closing napari writes what waits, also when the dock was never shown
        self._set_enabled()
        if self.session is not None and self.project.classes and has_labels:
            self._request_redraw(merge=False)  # confidence maps of an image segmented before

    def refresh_from_project(self) -> None:
        """Show labels another process wrote (maskclip refine): the image list and the current image."""
        self.nav.refresh_from_project()

    def accept_image_change(self) -> None:
        """Take the current image's new file content as the project's (old labels stay in its history)."""
        self.nav.accept_image_change()

    # === Corrections and saving (_edit_saving.EditSaver over editing.EditState) ==================
    def save_current(self, source: str = "annotator", wait: bool = False) -> None:
        """Write the current image's recorded edits (labels and verified mask) to the project, in the save
        thread. wait=True returns once every save so far is written: for callers that read the project
        next on this thread (class edits, applying a segmentation, export, training, quitting)."""
        self.editor.save(source, wait)

    def wait_for_saves(self) -> None:
        """Block until every save so far is written and its result shown (list state, learning, errors)."""
        self.editor.wait()

    def _on_written(self, kind: str, image_id: str, state) -> None:
        """A write finished (GUI thread): update the image list; the learner follows the edits' verified
        pixels (a stored prediction never changes verified pixels: nothing to learn)."""
        self.nav.refresh_item(image_id, state)
        if kind == "labels" and image_id == self.current_id:
            self._learn_from_current()
            if self.review.showing:
                self.review.refresh()  # verified pixels are no longer unsure

    def undo(self) -> None:
        """Undo the last edit of this image (stroke, fill, Reviewed ✓, Class ✓): labels and verified pixels
        go back together, and are saved."""
        self.editor.undo_redo(redo=False)

    def redo(self) -> None:
        self.editor.undo_redo(redo=True)

    def mark_reviewed(self) -> None:
        """Verify the whole current image as shown: labelled pixels keep their class, unlabelled ones are
        confirmed background (so an image with none of the classes can be verified too). On an image never
        segmented (nor imported) it asks first: it would mark every pixel not painted as background."""
        if self.current_id is None:
            return
        if self.nav.label_source is None and not self.edits.verified.all() \
                and not self.images.confirm_review(self.current_id):
            return
        self.editor.verify(None)

    def verify_selected_class(self) -> None:
        """Verify the pixels of the class selected in the labels layer's controls."""
        self.editor.verify_selected_class()

    def show_keys(self):
        """The keyboard help (every key the annotator adds and napari's that remain; F1)."""
        if self.keys_dialog is None:
            from .panels.keys import KeysDialog

            self.keys_dialog = KeysDialog(self)
        self.keys_dialog.show()
        self.keys_dialog.raise_()
        return self.keys_dialog

    def show_revisions(self):
        """The current image's revisions (source, time) with Restore (`Navigator.show_revisions`)."""
        return self.nav.show_revisions()

    def _learn_from_current(self) -> None:
        """With 'Learn from corrections' on, the image is redrawn after the learner, in a worker, has read
        the new verified pixels and refitted (`Segmenter.corrections_saved`)."""
        if self.segmenter.corrections_saved() and self._has_prediction():
            self._schedule_redraw()

    def _show_taught(self, *_) -> None:
        """The class table's 'Taught' column: verified pixels per class the learner learned from (hidden
        while 'Learn from corrections' is off or nothing was learned yet)."""
        taught = self.session.taught if self.session is not None else {}
        if not (self.learn_check.isChecked() and taught and self.project is not None):
            self.classes.show_taught(None)
            return
        background = taught.get(BACKGROUND_TAUGHT, 0) if self.project.background else None
        self.classes.show_taught(taught, background)

    # === Closing: write what waits ===============================================================
    def _flush(self) -> None:
        """Write what waits on a timer or in the save thread: the current edits and the image shown."""
        self.save_current(wait=True)
        self.nav.remember_now()

    def hideEvent(self, event):
        self._flush()
        super().hideEvent(event)

    # === Segmentation (jobs in workers: _jobs.JobRunner; cheap redraws on the GUI thread) ========
    def _ready_to_segment(self) -> bool:
        if not self._project_shown(error=True):
            return False
        if self.current_id is None:
            self.show_message(say.OPEN_FIRST, error=True)
            return False
        if not self.project.classes:
            self.show_message(say.ADD_CLASSES_FIRST, error=True)
            return False
        return True

    def segment_current(self) -> None:
        """Segment the current image and store it: unverified labels of any source are replaced (said)."""
        if self._ready_to_segment():
            self.segmenter.segment_current()

    def segment_all(self) -> None:
        if self._ready_to_segment():
            self.save_current(wait=True)
            self.segmenter.segment_all()

    def load_model(self) -> None:
        """Load the chosen model now (otherwise it loads on the first segmentation)."""
        self.segmenter.start_job([], None, merge=False, kind="Loading")

    def _schedule_redraw(self, *_):
        self.method_panel.update_enabled()
        self._redraw_timer.start()

    def _has_prediction(self) -> bool:
        """Whether the current image was segmented (now or in an earlier session): redraws apply to it."""
        return self.current_id is not None and (self.segmentation is not None
                                                or self.project.has_labels(self.current_id))

    def _on_method_changed(self) -> None:
        self._apply_setting()
        QTimer.singleShot(0, self._save_settings)  # after the redraw: the new look comes first

    def _apply_setting(self) -> None:
        """A MaskCLIP setting changed: redo or preview the current image (`Segmenter.apply_setting`)."""
        if self._has_prediction():
            self.segmenter.apply_setting()

    def _request_redraw(self, merge: bool = True) -> None:
        self.segmenter.request_redraw(merge)

    def cancel(self) -> None:
        """Stop the running job after the image in progress."""
        self.segmenter.cancel()

    def _on_weights_unavailable(self) -> None:
        self.message.setText(self.message.text() + say.WEIGHTS_HINT)
        self.method_panel.note_load_failure()

    # === Hover and export ========================================================================
    def _on_cursor(self, event=None) -> None:
        if self.project is not None and self.current_id is not None and self.labels_layer is not None:
            self.hover_label.setText(self.layers.describe_cursor(
                self.viewer.cursor.position, self.current_id, self.project.class_names, self.segmentation,
                self.edits.verified))

    def export(self, out: Path, fmt: str, verified_only: bool = False, overwrite: bool = False,
               val_fraction: float | None = None):
        """Export the project in a worker (a fresh Project instance reads the committed files). Returns it.
        val_fraction: the VOC validation share (default: the export panel's setting)."""
        if self.project is None or self.busy:
            return None
        self.save_current(wait=True)
        val = self.export_panel.val_fraction() if val_fraction is None else val_fraction
        worker = self.segmenter.export_job(self.project.root, out, fmt, verified_only, val, overwrite)
        self.show_message(say.exporting(fmt, out))
        self._set_enabled()
        worker.start()
        return worker
