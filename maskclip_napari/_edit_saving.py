"""The current image's edits between the labels layer and the project: recording strokes (`EditState`),
the autosave timer, the save thread (`_saving.SaveQueue`), adopting what other writers committed, undo/redo
and verification. Qt timers and signals, no widgets: the widget connects its signals.

`target()` gives (project, image_id, labels_layer) shown now (any of them may be None).
Signals: message(str text, bool error), failed(exception), written(str kind, str image_id, ImageState).
"""
from __future__ import annotations

from typing import Callable

from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import QApplication

from maskclip.errors import MaskCLIPError

from . import _wording as say
from ._saving import EditWriter, SavedEdit, SaveQueue
from .editing import EditState

AUTOSAVE_MS = 300


class EditSaver(QObject):
    message = Signal(str, bool)
    failed = Signal(object)
    written = Signal(str, str, object)

    def __init__(self, target: Callable[[], tuple], parent=None):
        super().__init__(parent)
        self._target = target
        self.edits = EditState()
        self.saves = SaveQueue(self)
        self.saves.saved.connect(self._on_saved)
        self.writer = EditWriter()  # used in the save thread only: a failed write leaves its base for the next
        self._autosave = QTimer(self, singleShot=True, interval=AUTOSAVE_MS)
        self._autosave.timeout.connect(self.save)

    @property
    def autosave_pending(self) -> bool:
        return self._autosave.isActive()

    @property
    def unsaved(self) -> bool:
        """Edits waiting for the autosave timer or being written."""
        return self.edits.dirty or self._autosave.isActive() or self.saves.pending > 0

    def on_paint(self, event=None) -> None:
        """A brush, fill, polygon or erase stroke ended: one undo step; save soon (its pixels are verified).
        napari may announce a stroke before its last pixels are written: the step is taken on the next turn."""
        QTimer.singleShot(0, self.record)
        self._autosave.start()

    def record(self) -> None:
        """Record what changed in the labels layer (every way of editing counts: paint, fill, erase,
        polygon, a script writing to layer.data) as one undo step; changed pixels become verified, and so
        do the pixels a brush went over that already showed its label (`_stroke_layer.StrokeLabels`)."""
        layer = self._target()[2]
        if layer is not None:
            take_touched = getattr(layer, "take_touched", None)  # a "labels" layer made by someone else has none
            self.edits.record(layer.data, take_touched() if take_touched is not None else None)

    def save(self, source: str = "annotator", wait: bool = False) -> None:
        """Write the recorded edits (labels and verified mask) in the save thread; wait=True returns once
        every save so far is written."""
        self._autosave.stop()
        self.record()
        project, image_id, _ = self._target()
        if project is not None and image_id is not None:
            edit = self.edits.take_save(len(project.classes))
            if edit is not None:
                labels, verified, base = edit
                self.saves.submit("labels", image_id,
                                  lambda: self.writer.write(project, image_id, labels, verified, base, source))
        if wait:
            self.saves.wait()

    def wait(self) -> None:
        """Block until every save so far is written and its result shown."""
        self.saves.wait()
        QApplication.processEvents()  # delivers the queued `saved` signals

    def _on_saved(self, kind: str, image_id: str, result, error: Exception | None) -> None:
        project, current_id, _ = self._target()
        if error is not None:
            if kind == "labels" and image_id == current_id:
                self.edits.mark_unsaved()  # the edits are still in the layer: the next save tries again
            self.failed.emit(error if isinstance(error, MaskCLIPError) else
                             MaskCLIPError(say.could_not_save(kind, image_id, error)))
            return
        if project is None or image_id not in project:
            return
        if kind == "labels" and image_id == current_id:
            self._adopt(result)
        self.written.emit(kind, image_id, result[-1])

    def _adopt(self, saved: SavedEdit) -> None:
        """Show what other writers committed to the current image while it was edited (EditState.adopt)."""
        project, _, layer = self._target()
        adopted = self.edits.adopt(saved, len(project.classes), layer.data if layer is not None else None)
        if adopted is None:
            return
        mask, values = adopted
        if layer is not None and layer.data.shape == values.shape:
            layer.data[mask] = values[mask]
            layer.refresh()

    def undo_redo(self, redo: bool) -> None:
        """Undo (redo) the last edit: labels and verified pixels together, saved at once."""
        _, image_id, layer = self._target()
        if layer is None or not self.edits.editable or image_id is None:
            return
        done = "Redone" if redo else "Undone"
        self.record()  # a stroke not yet recorded (with the pixels it confirmed) is the step to undo
        values = self.edits.step(redo, layer.data)
        if values is None:
            self.message.emit(say.nothing_to(done, image_id), False)
            return
        layer.data[...] = values
        layer.refresh()
        self.save(source=done.lower())
        self.message.emit(say.step_done(done, image_id), False)

    def verify_selected_class(self) -> None:
        """Verify the pixels of the class selected in the labels layer's controls (its mask is right as
        shown; painting the same class over it would change no pixel and so verify nothing)."""
        project, _, layer = self._target()
        if layer is None or project is None:
            return
        index = int(layer.selected_label) - 1
        if not 0 <= index < len(project.classes):
            self.message.emit(say.SELECT_CLASS_FIRST, True)
            return
        self.verify(index)

    def unverify(self, selected_class: bool) -> None:
        """Un-verify the image's pixels (or those of the class selected in the labels layer) as one undoable
        edit; their labels stay."""
        project, image_id, layer = self._target()
        if image_id is None or layer is None or project is None or not self.edits.editable:
            return
        index = None
        if selected_class:
            index = int(layer.selected_label) - 1
            if not 0 <= index < len(project.classes):
                self.message.emit(say.SELECT_CLASS_FIRST, True)
                return
        count = self.edits.unverify(index, layer.data)
        self.save(source="unverified")
        self.message.emit(say.unverified(image_id, count, project.class_names[index] if index is not None else None),
                          False)

    def verify(self, class_index: int | None) -> None:
        """Verify pixels as one undoable edit: all of them (None: Reviewed ✓) or one class's (Class ✓)."""
        project, image_id, layer = self._target()
        if image_id is None or layer is None or not self.edits.editable:
            return
        values = self.edits.verify(class_index, layer.data)
        self.save(source="reviewed" if class_index is None else "verified class")
        # the image list follows when it is written, and the learner (with Learn from corrections on)
        if class_index is None:
            labelled = int((values > 0).sum())
            self.message.emit(say.reviewed(image_id, labelled, values.size - labelled), False)
        else:
            self.message.emit(say.class_verified(image_id, int((values == class_index + 1).sum()),
                                                 project.class_names[class_index]), False)
