"""Opening a project, moving between its images and showing one: the annotator's current image.

`Navigator` owns what is shown (`project`, `current_id`, `image`, `segmentation`) and puts it on screen: it
reads images and projects in a worker (`_jobs.Loader`, `_loading`), fills the image list (`panels.images`),
sets the image and labels layers (`_layer_manager`) and starts the current image's edits over
(`editing.EditState` through `_edit_saving.EditSaver`). It never imports the widget: the widget gives it
these objects and listens to its signals:

- message(text, error) / failed(exception): what to say;
- state_changed: controls may need enabling or disabling;
- open_ready(project, opened, split): a project was read: the widget shows it (`AnnotatorWidget.open_project`
  resets the panels, then calls `show_project`);
- labels_reset: the labels layer got new values (the brush line follows the selected label);
- image_shown(has_stored_labels): an image is on screen;
- segmentation_shown: a segmentation of the current image is on screen (confidences changed).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from maskclip.errors import MaskCLIPError
from maskclip.project import Project

from . import _wording as say
from ._layers import layers_ready
from ._loading import LoadedImage, OpenedProject, load_image, open_job
from ._wording import gui_text
from .editing import to_layer_values

REMEMBER_IMAGE_MS = 1000
LAYER_TURN_MS = 20  # between napari layer builds: the viewer repaints and takes input in between
WARM_UP_POLL_MS = 20  # a read that finished before napari's layer warm-up looks again this often


class Navigator(QObject):
    message = Signal(str, bool)
    failed = Signal(object)
    state_changed = Signal()
    open_ready = Signal(object, object, bool)
    labels_reset = Signal()
    image_shown = Signal(bool)
    segmentation_shown = Signal()

    def __init__(self, viewer, images, status, layers, loader, editor, parent=None):
        super().__init__(parent)
        self.viewer, self.images, self.status, self.layers, self.loader, self.editor = \
            viewer, images, status, layers, loader, editor
        self.project: Project | None = None
        self.current_id: str | None = None
        self.image: np.ndarray | None = None
        self.segmentation = None  # the current image's last Segmentation (confidence layers, hover)
        self.label_source: str | None = None  # where the current image's unverified labels came from
        self.revisions = None  # panels.revisions.RevisionsDialog, made when History… is first pressed
        # the image shown is written to the project once navigation pauses (a project.json write per
        # image would cost every Next its own disk sync)
        self._remember_timer = QTimer(self, singleShot=True, interval=REMEMBER_IMAGE_MS)
        self._remember_timer.timeout.connect(self.remember_image)
        # the image shown is named in the window title, not in a canvas text overlay: each new glyph of
        # napari's overlay costs the GUI thread a GPU pass (~0.4 s for the first text under software OpenGL)
        self._base_title = viewer.title

    @property
    def edits(self):
        return self.editor.edits

    def prepare_layers(self) -> None:
        """Make the image and labels layers, hidden and empty, while napari starts: napari takes about
        0.1 s of GUI time per new layer here, which opening a project would otherwise add to its stall.
        One layer per event-loop turn; a project opened first makes them itself."""
        if self.project is not None:
            return
        if not layers_ready(wait=False):
            QTimer.singleShot(WARM_UP_POLL_MS, self.prepare_layers)
            return
        if self.layers.add_placeholder():
            QTimer.singleShot(LAYER_TURN_MS, self.prepare_layers)

    # --- opening ------------------------------------------------------------------------------------
    def open_path(self, path: Path, project_dir: Path | None = None, classes_file: Path | None = None,
                  background: bool = False) -> bool:
        """Open a project folder, or an image folder (its project is created on first use; a folder without
        images is refused). background=True reads in a worker and returns True at once; otherwise it
        returns once the project shows, False on error."""
        if not background:
            try:
                opened = open_job(Path(path), project_dir, classes_file)
            except MaskCLIPError as exc:
                self.failed.emit(exc)
                return False
            self.open_ready.emit(opened.project, opened, False)
            return True
        self._start_loader(open_job, lambda opened: self.open_ready.emit(opened.project, opened, True),
                           Path(path), project_dir, classes_file, message=say.opening(Path(path).name))
        return True

    def set_project(self, project: Project) -> None:
        """Make `project` the one shown, with no image yet (the widget resets its panels next)."""
        self.project = project
        self.current_id = None
        self.label_source = None
        self.edits.forget_histories()  # another project's images may have the same ids
        self.segmentation = None
        self.image = None
        self.layers.remove_confidence_layers()
        self.images.show_project(project.root)

    def show_project(self, opened: OpenedProject | None = None, split: bool = False) -> None:
        """Fill the image list and show the first image (the one last shown, else the first)."""
        project = self.project
        self.fill_image_list(opened.states if opened is not None else None)
        note = say.skipped_files(project.skipped_images)
        self.message.emit(say.opened(project.root.name, len(project), note), bool(note))
        if opened is not None and opened.first is not None:
            self._show_loaded(opened.first, split=split)
        elif len(project):
            last = project.settings.get("annotator", {}).get("last_image")
            self.show_image(last if last in project else project.image_ids[0])

    def add_images(self, files) -> None:
        """Add image files to the project (the 'Add images…' button)."""
        if not files or self.project is None:
            return
        try:
            report = self.project.add_images([Path(f) for f in files])
        except MaskCLIPError as exc:
            self.failed.emit(exc)
            return
        self.fill_image_list()
        unreadable = [(p, r) for p, r in report.skipped if r != "already in the project"]
        present = len(report.skipped) - len(unreadable)
        self.message.emit(say.added_images(len(report.added), present) + say.skipped_files(unreadable),
                          bool(unreadable))

    def _start_loader(self, job, on_done, *args, message: str) -> None:
        """Run a reading job in a worker; only the latest request's result is shown."""
        def failed(exc):
            self.failed.emit(exc)
            if self.project is not None and self.current_id in self.project:  # the list shows what is shown
                self.images.select_row(self.project.image_ids.index(self.current_id))

        worker = self.loader.start(job, *args, on_done=on_done, on_failed=failed,
                                   on_finished=self.state_changed.emit)
        self.message.emit(message, False)
        self.state_changed.emit()
        worker.start()

    def remember_image(self) -> None:
        """Write the image shown as the project's last image (reopening shows it first), in the save thread."""
        self._remember_timer.stop()
        if self.project is None or self.current_id is None:
            return
        project, image_id = self.project, self.current_id
        self.editor.saves.submit("settings", "",
                                 lambda: project.update_settings({"annotator": {"last_image": image_id}}))

    def remember_now(self) -> None:
        """Write the image shown now when its write waits on the timer (closing, another project)."""
        if self._remember_timer.isActive():
            self.remember_image()

    # --- the image list -----------------------------------------------------------------------------
    def fill_image_list(self, states=None) -> None:
        p = self.project
        self.images.fill(states if states is not None else p.list_images(),
                         p.image_ids.index(self.current_id) if self.current_id in p else None)
        self.show_class_progress()

    def refresh_item(self, image_id: str, state=None) -> None:
        """Redescribe an image's list row (state: its ImageState when already read)."""
        row = self.project.image_ids.index(image_id)
        self.images.refresh_item(row, state if state is not None else self.project.image_state(image_id))
        self.show_class_progress()

    def show_class_progress(self) -> None:
        """The per-class verified shares above the list (from the list's states and the summary cache)."""
        p = self.project
        if p is not None and len(self.images.states) == len(p):
            self.images.show_class_progress(p.class_progress(self.images.states), p.class_colours)

    def on_list_row(self, row: int) -> None:
        if self.project is None or not 0 <= row < len(self.project):
            return
        self.show_image(self.project.image_ids[row], background=True)

    def step(self, step: int, background: bool = False) -> None:
        """The next (step +1) or previous (-1) image the list's status filter shows, wrapping."""
        if self.project is None or self.current_id is None:
            return
        ids = self.project.image_ids
        start = ids.index(self.current_id)
        for n in range(1, len(ids)):
            row = (start + n * step) % len(ids)
            if self.images.matches_filter(row):
                self.show_image(ids[row], background=background)
                return
        if len(ids) > 1:
            self.message.emit(say.none_match(self.images.filter_combo.currentText()), False)

    def next_unverified(self) -> None:
        """Show the next image (in list order, wrapping) that is not verified; say so when all are."""
        if self.project is None or self.current_id is None:
            return
        ids = self.project.image_ids
        start = ids.index(self.current_id)
        for step in range(1, len(ids) + 1):
            image_id = ids[(start + step) % len(ids)]
            if self.project.image_state(image_id).status != "verified":
                if image_id != self.current_id:
                    self.show_image(image_id, background=True)
                return
        self.message.emit(say.all_verified(len(ids)), False)

    def next_least_confident(self) -> None:
        """Show the image not yet verified whose last segmentation was least sure (stored mean confidence over
        its unverified pixels); pressed again, the next least sure after the one shown (wrapping)."""
        if self.project is None or self.current_id is None:
            return
        p = self.project
        scores = p.confidence_scores()
        ranked = sorted((score, image_id) for image_id, score in scores.items()
                        if p.image_state(image_id).status not in ("verified", "stale"))
        if not ranked:
            self.message.emit(say.NO_CONFIDENCE, False)
            return
        order = [image_id for _, image_id in ranked]
        rank = (order.index(self.current_id) + 1) % len(order) if self.current_id in order else 0
        score, image_id = ranked[rank]
        if image_id != self.current_id:
            self.show_image(image_id, background=True)
        self.message.emit(say.least_confident(image_id, score, rank + 1, len(order)), False)

    # --- showing an image ---------------------------------------------------------------------------
    def show_image(self, image_id: str, background: bool = False) -> None:
        """Make `image_id` the current image: its pixels, stored labels and (when cheap) confidences.
        background=True reads the files in a worker (the GUI's way) and shows them when read."""
        self.editor.save("annotator", not background)
        if background:
            self.images.select_row(self.project.image_ids.index(image_id))  # the click shows at once
            self._start_loader(load_image, lambda loaded: self._show_loaded(loaded, split=True), self.project,
                               image_id, message=say.reading(image_id))
            return
        try:
            loaded = load_image(self.project, image_id)
        except MaskCLIPError as exc:
            self.failed.emit(exc)
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
        token = self.loader.token
        if not layers_ready(wait=not split):  # napari's one-time warm-up still runs in its thread
            QTimer.singleShot(WARM_UP_POLL_MS, lambda: self.loader.current(token) and self._show_loaded(loaded, split))
            return
        self.editor.save("annotator", False)  # edits made while it was being read
        new_shape = self.image is None or self.image.shape[:2] != loaded.image.shape[:2]
        first_layers = self.layers.image_layer is None and self.layers.labels_layer is None
        self.layers.set_image(loaded.image)
        if split and first_layers:
            QTimer.singleShot(LAYER_TURN_MS,
                              lambda: self.loader.current(token) and self._show_labels(loaded, new_shape))
        else:
            self._show_labels(loaded, new_shape)

    def _show_labels(self, loaded: LoadedImage, new_shape: bool) -> None:
        """The rest of _show_loaded: labels, confidence layers, view, list and settings."""
        p, image_id = self.project, loaded.image_id
        if p is None or image_id not in p:
            return
        self.current_id = image_id
        self.image = loaded.image
        self.segmentation = None
        self.label_source = loaded.source
        self.edits.load(loaded.verified, stale=loaded.stale_error is not None)
        self.set_labels_data(loaded.values, editable=loaded.stale_error is None)
        self.update_confidence_layers()
        if new_shape:
            self.viewer.reset_view()  # after every layer has the new size: the view fits this image
        self.images.select_row(p.image_ids.index(image_id))
        self.viewer.title = f"{self._base_title} — {image_id}"
        if loaded.stale_error is not None:
            self.images.stale_label.setText(gui_text(str(loaded.stale_error)))
            self.failed.emit(loaded.stale_error)
            self.refresh_item(image_id)  # the list may still show the state from before the change
        elif self.status.message.text().startswith(say.READING_PREFIX):
            self.message.emit(say.showing(image_id, p.image_ids.index(image_id) + 1, len(p)), False)
        self._remember_timer.start()
        self.image_shown.emit(bool(loaded.has_labels))

    def show_segmentation(self, seg, merge: bool, stored: bool) -> None:
        """Show a segmentation of the current image; with merge, also as its labels (verified pixels and
        strokes kept) and, unless its job's worker stored it, store it in the save thread after the edits
        queued before it."""
        self.segmentation = seg
        if merge:
            self.editor.save("annotator", False)  # strokes made while it ran: written over the prediction
            project, image_id = self.project, self.current_id
            self.label_source = "maskclip"
            if not stored:
                self.editor.saves.submit("prediction", image_id, lambda: (project.merge_prediction(
                    image_id, seg.labels, seg.probs.max(axis=0), class_names=seg.class_names, source="maskclip"),
                    project.image_state(image_id)))
            # what the project holds once the writes are done: the prediction under every pixel not verified
            values = to_layer_values(project.project_labels(seg.labels, seg.class_names))
            recorded = self.edits.recorded
            if recorded is not None and recorded.shape == values.shape:
                values = np.where(self.edits.verified, recorded, values)
            self.set_labels_data(values)
        self.update_confidence_layers()
        self.segmentation_shown.emit()

    def update_confidence_layers(self) -> None:
        if self.project is None:
            self.layers.remove_confidence_layers()
        else:
            self.layers.update_confidence_layers(self.project.class_names, self.project.class_colours)

    def reload_labels(self) -> None:
        """Show the project's stored labels of the current image (its undo history stays)."""
        try:
            loaded = load_image(self.project, self.current_id)
        except MaskCLIPError as exc:
            self.failed.emit(exc)
            return
        self.label_source = loaded.source
        self.edits.load(loaded.verified, stale=loaded.stale_error is not None)
        self.set_labels_data(loaded.values, editable=loaded.stale_error is None)
        if loaded.stale_error is not None:
            self.images.stale_label.setText(gui_text(str(loaded.stale_error)))

    def set_labels_data(self, values: np.ndarray, editable: bool = True) -> None:
        """Put values in the labels layer (made on first use); the edits start over from them."""
        p = self.project
        self.layers.set_labels(values, p.class_names, p.class_colours, editable)
        self.edits.start(values, len(p.classes), editable, self.current_id)
        self.labels_reset.emit()

    def refresh_from_project(self) -> None:
        """Show labels another process wrote (maskclip refine): the image list and the current image."""
        if self.project is None:
            return
        self.editor.save("annotator", True)
        self.fill_image_list()
        if self.current_id is not None:
            self.reload_labels()

    # --- revisions ----------------------------------------------------------------------------------
    def show_revisions(self):
        """The current image's revisions (source, time) in a small window with Restore (panels.revisions)."""
        if self.project is None or self.current_id is None:
            return None
        if self.revisions is None:
            from .panels.revisions import RevisionsDialog

            self.revisions = RevisionsDialog(self.parent())
            self.revisions.restore_requested.connect(self.restore_revision)
        self.editor.save("annotator", True)
        self.revisions.show_history(self.current_id, self.project.history(self.current_id))
        self.revisions.show()
        return self.revisions

    def restore_revision(self, rev: int) -> None:
        """Make revision `rev` of the current image current again (a new revision) and show it."""
        image_id = self.current_id
        if image_id is None:
            return
        self.editor.save("annotator", True)
        try:
            self.project.restore_revision(image_id, rev)
        except MaskCLIPError as exc:
            self.failed.emit(exc)
            return
        self.reload_labels()
        self.refresh_item(image_id)
        self.message.emit(say.restored(image_id, rev), False)
        if self.revisions is not None and self.revisions.isVisible():
            self.revisions.show_history(image_id, self.project.history(image_id))

    def accept_image_change(self) -> None:
        """Take the current image's new file content as the project's: its old labels are cleared (they stay
        in the image's history) and the new pixels are shown."""
        image_id = self.current_id
        if image_id is None or not self.project.is_stale(image_id):
            return
        try:
            self.project.accept_image_change(image_id)
        except MaskCLIPError as exc:
            self.failed.emit(exc)
            return
        self.message.emit(say.accepted_change(image_id), False)
        self.refresh_item(image_id)
        self.show_image(image_id)
