"""The annotator's label saves, written in one background thread in the order they were made.

Encoding and writing a 12-Mpx labels PNG takes about half a second; done on the GUI thread it froze the
viewer after every stroke (autosave) and on every Next with edits. The widget snapshots the labels and the
verified mask (cheap), hands the write to this queue and hears back, on the GUI thread, through `saved`.
Readers of the project (the image loader, export, training, class edits) call `wait()` first so they see
every edit made before them. A write holds its Project's lock, so the GUI thread keeps away from the
project meanwhile: each write also reads what the GUI shows next (the image's list state).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, NamedTuple

import numpy as np
from qtpy.QtCore import QObject, Signal

from maskclip.project import ImageState, Project


class SavedEdit(NamedTuple):
    """A written edit: what the annotator submitted and what the project holds after merging it."""

    labels: np.ndarray  # submitted (project class indices, 255 = unlabelled)
    verified: np.ndarray
    stored: np.ndarray  # the image's labels after the merge, other writers' pixels included
    stored_verified: np.ndarray
    state: ImageState  # for the image list


class EditWriter:
    """Writes the annotator's edits (called in the save thread, one write at a time).

    Each write passes the copy its edit started from (`base`), so only the annotator's own pixels are taken
    and the merged result is read back for the annotator to adopt. A failed write leaves its base behind:
    the image's next write starts from it, so the failed edit's pixels are sent again, also by a write that
    was queued before the failure was known (nothing is lost)."""

    def __init__(self):
        self._unsaved_base: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}

    def write(self, project: Project, image_id: str, labels: np.ndarray, verified: np.ndarray,
              base: tuple[np.ndarray, np.ndarray] | None, source: str) -> SavedEdit:
        base = self._unsaved_base.get(image_id, base)
        try:
            project.set_labels(image_id, labels, verified=verified, source=source, base=base)
        except Exception:
            self._unsaved_base[image_id] = base
            raise
        self._unsaved_base.pop(image_id, None)
        stored, stored_verified = project.get_labels_and_verified(image_id)
        return SavedEdit(labels, verified, stored, stored_verified, project.image_state(image_id))


class SaveQueue(QObject):
    """One writer thread; saves run one at a time, in submission order."""

    # what was written ("labels", "prediction" or "settings"), the image id ("" for settings), what the write
    # returned, the exception it raised (None when it was written)
    saved = Signal(str, str, object, object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maskclip-save")
        self._lock = threading.Lock()
        self._pending = 0

    def submit(self, kind: str, image_id: str, write: Callable[[], object]) -> None:
        with self._lock:
            self._pending += 1
        self._pool.submit(self._run, kind, image_id, write)

    def _run(self, kind: str, image_id: str, write: Callable[[], object]) -> None:
        result = error = None
        try:
            result = write()
        except Exception as exc:  # reported to the user on the GUI thread, never lost in the thread
            error = exc
        finally:
            with self._lock:
                self._pending -= 1
        self.saved.emit(kind, image_id, result, error)

    @property
    def pending(self) -> int:
        """Saves submitted and not yet written."""
        with self._lock:
            return self._pending

    def wait(self) -> None:
        """Return once every save submitted so far is written (any thread but the writer's own)."""
        if self.pending:
            self._pool.submit(lambda: None).result()
