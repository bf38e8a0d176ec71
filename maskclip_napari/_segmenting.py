"""Segmenting with the loaded model: cheap redraws on the GUI thread, everything else as a job in a worker
(`_jobs.JobRunner`: one at a time, with progress and Cancel). Qt timers and signals, no widgets.

A redraw is cheap when the session has the image's features and the prompts cached (`ModelSession.is_cheap`);
it then runs over two event-loop turns (MaskCLIP's cheap part, then showing it) so input is handled in
between. An expensive redraw asked for while a job runs waits for it (`JobRunner.pending_merge`).

`target()` gives (project, image_id, image) shown now; `method()` and `model_choice()` what the controls say;
`show(segmentation, merge, stored)` shows a result of the current image made with the current method (and
with merge, shows it as the labels and stores it unless the job's worker did: `stored`). The job's progress is shown in
`progress` (a QProgressBar). Signals: message(str, bool error), failed(exception), state_changed (busy or
progress changed), session_loaded (a model was loaded), weights_unavailable (the weights could not be read),
taught (what learning from corrections has read: verified pixels per class).

Learning from corrections: a saved correction makes the next redraw a job whose worker re-reads the image's
verified pixels and fits the learner (`ModelSession.learn_all`); the redraws after it only apply the fit.
"""
from __future__ import annotations

import time
from typing import Callable

from qtpy.QtCore import QObject, QTimer, Signal

from maskclip.errors import MaskCLIPError, WeightsUnavailableError
from maskclip.export import export_project
from maskclip.project import Project

from . import _wording as say
from ._jobs import JobRunner
from ._label_sources import describe, is_maskclip, label_source
from ._session import JobResult, Method, ModelSession, segment_job


QUIET_JOBS = ("Export", "Update", "Preview", "Confidence")  # they say their own result, or nothing


class Segmenter(QObject):
    message = Signal(str, bool)
    failed = Signal(object)
    state_changed = Signal()
    session_loaded = Signal()
    weights_unavailable = Signal()
    stored = Signal(str)  # a job's worker stored this image's prediction
    taught = Signal(dict)  # the learner read the project's verified pixels: per class (`_session.taught_pixels`)

    def __init__(self, target: Callable, method: Callable, model_choice: Callable, show: Callable, progress,
                 parent=None, label_source: Callable = lambda: None):
        super().__init__(parent)
        self._label_source = label_source  # () -> where the current image's unverified labels came from
        self._target, self._method, self._model_choice, self._show = target, method, model_choice, show
        self.progress = progress
        self.jobs = JobRunner()
        self.session: ModelSession | None = None
        self.last_redraw_s: float | None = None  # latency of the last in-place (GUI thread) redraw
        self.last_redraw_blocking_s: float | None = None
        self.redraw_count = 0
        self._setting_message = ""  # what the last setting change said (an Update / Preview job ends with it)
        self._relearned = False  # corrections were saved since the last setting change: the learner refits

    @property
    def busy(self) -> bool:
        return self.jobs.busy

    def request_redraw(self, merge: bool = True, kind: str | None = None) -> None:
        """Recompute the current image: on the GUI thread when cheap (features and prompts cached),
        otherwise in a worker; while another job runs, an expensive redraw waits for it. kind: the job's
        name when it is not the user's Segment ("Update", "Preview": it ends without a 'done' message)."""
        project, image_id, image = self._target()
        if project is None or image_id is None or not project.classes:
            return
        method, choice = self._method(), self._model_choice()
        cheap = (self.session is not None and self.session.serves(choice, project.cache_dir)
                 and self.session.is_cheap(image, method))
        if cheap:
            start = time.perf_counter()
            try:
                seg = self.session.segment(image, method)
            except MaskCLIPError as exc:
                self.failed.emit(exc)
                return
            computed = time.perf_counter() - start
            result = JobResult(image_id, seg, 1, 1)
            QTimer.singleShot(0, lambda: self._finish_redraw(result, method, merge, start, computed))
            return
        if self.busy:
            self.jobs.add_pending(merge)
            return
        self.start_job([(image_id, project.image_path(image_id))], method, merge=merge,
                       kind=kind or ("Segment" if merge else "Confidence"))

    def _finish_redraw(self, result: JobResult, method: Method, merge: bool, start: float, computed: float) -> None:
        shown = time.perf_counter()
        project = self._target()[0]
        if project is not None and result.image_id in project:
            self._apply(result, method, merge)
        end = time.perf_counter()
        self.last_redraw_s = end - start  # from the toggle to the layers showing it
        self.last_redraw_blocking_s = max(computed, end - shown)  # longest the event loop was held
        self.redraw_count += 1

    def _apply(self, result: JobResult, method: Method, merge: bool) -> None:
        """Show a segmentation if it is of the current image and, with merge, store it (verified pixels
        win). Stores happen off the GUI thread: a job's worker stores its own results; a redraw made on the
        GUI thread is stored by the save thread, after the edits queued before it."""
        if result.merge_error is not None:
            self.failed.emit(result.merge_error)
            return
        if result.stored:
            self.stored.emit(result.image_id)
        if result.image_id != self._target()[1]:
            return
        if method != self._method():
            # settings changed while it ran: redo (now cheap) when the job ends
            self.jobs.add_pending(merge)
            return
        self._show(result.segmentation, merge, result.stored)

    def segment_current(self) -> None:
        """Segment the current image and store it (the user's Segment): labels of another source than
        MaskCLIP (MaskCLIP+, an import) are replaced, and it says so."""
        project, image_id, _ = self._target()
        source = self._label_source()
        if project.has_labels(image_id) and not is_maskclip(source):
            self.message.emit(say.replacing(describe(source), image_id), False)
        self.request_redraw()

    def apply_setting(self) -> None:
        """A MaskCLIP setting changed (K, PD, threshold, classes, learning) on a segmented image: redo its
        labels in place when they are MaskCLIP's own; over labels of another source (MaskCLIP+, an import)
        only preview (confidence layers) until the user's Segment. With no model loaded, compute nothing."""
        if self.session is None:
            self.message.emit(say.SETTING_NO_MODEL, False)
            return
        source, image_id = self._label_source(), self._target()[1]
        in_place = is_maskclip(source)
        self.request_redraw(merge=in_place, kind="Update" if in_place else "Preview")
        updated = say.relearned(image_id) if self._relearned else say.updated(image_id)
        self._relearned = False
        self._setting_message = updated if in_place else say.previewing(describe(source))
        self.message.emit(self._setting_message, False)  # again when a job did it (its progress said more)

    def segment_all(self) -> None:
        """Segment and store every image of the project that is not stale (saying how many of them have
        labels of another source than MaskCLIP, which it replaces)."""
        p = self._target()[0]
        others = sum(1 for i in p.image_ids if p.has_labels(i) and not is_maskclip(label_source(p.history(i))))
        if others:
            self.message.emit(say.replacing_all(others, len(p)), False)
        states = p.list_images()
        jobs = [(s.id, s.path) for s in states if not s.stale]
        if len(states) > len(jobs):
            self.message.emit(say.stale_skipped(len(states) - len(jobs)), False)
        self.start_job(jobs, self._method(), merge=True, kind="Segment all")

    def start_job(self, images, method: Method | None, merge: bool, kind: str) -> None:
        """Segment `images` ([(image_id, path)]; none: only load the model) in a worker, storing the results
        with merge."""
        if self.busy:
            self.message.emit(say.BUSY, True)
            return
        project = self._target()[0]
        cache_dir = project.cache_dir if project is not None else None
        worker = self.jobs.create(segment_job, self.session, self._model_choice(), cache_dir, images, method, project,
                                  merge, kind=kind, range=len(images), on_error=self._on_job_error,
                                  on_finished=self._on_job_finished,
                                  on_yield=lambda value: self._on_job_yield(value, project, method, merge))
        self._show_job_progress()
        self.progress.setValue(0)
        self.state_changed.emit()
        worker.start()

    def corrections_saved(self) -> bool:
        """New verified pixels of the current image were written: with 'Learn from corrections' on, the
        learner re-reads and refits in the next job's worker (never here, on the GUI thread). True when the
        image should be redrawn."""
        project, image_id, image = self._target()
        method = self._method() if project is not None and project.classes else None
        if method is None or method.learner is None or self.session is None or image is None:
            return False
        if not self.session.serves(self._model_choice(), project.cache_dir):
            return False
        self.session.corrections_changed()
        self._relearned = True  # the redraw that follows says so
        return True

    def export_job(self, root, out, fmt: str, verified_only: bool, val_fraction: float, overwrite: bool):
        """An export of the project at `root` (a fresh Project instance reads the committed files) as the
        one job; says how it went. The caller starts the returned worker."""
        def run():
            return export_project(Project.open(root), out, fmt, verified_only=verified_only,
                                  val_fraction=val_fraction, overwrite=overwrite)

        return self.create_other_job(run, "Export", lambda report: self.message.emit(
            say.exported(report, fmt, out), bool(report.skipped) or not report.exported))

    def create_other_job(self, fn: Callable, kind: str, on_return: Callable):
        """Another job (an export) in the same one-job-at-a-time worker, shown as busy; the caller starts it."""
        worker = self.jobs.create(fn, kind=kind, on_error=self._on_job_error, on_finished=self._on_job_finished,
                                  on_return=on_return)
        self.progress.setRange(0, 0)
        return worker

    def _show_job_progress(self) -> None:
        self.progress.setRange(0, self.jobs.range)
        self.progress.setFormat(f"{self.jobs.kind}: %v/%m")

    def _on_job_yield(self, value, project, method, merge) -> None:
        if isinstance(value, str):
            self.message.emit(value, False)
            if value.startswith(say.LOADING_PREFIX):  # the model load gives no progress: a busy bar until it ends
                self.progress.setRange(0, 0)
                self.progress.setFormat(say.LOADING_MODEL)
                self.state_changed.emit()
        elif isinstance(value, ModelSession):
            self.session = value
            self.session_loaded.emit()
            self.message.emit(say.loaded(value.choice.describe()), False)
            self._show_job_progress()
            self.state_changed.emit()
        elif isinstance(value, JobResult):
            self.progress.setValue(value.done)
            self.jobs.report(value.done)
            if project is self._target()[0] and value.image_id in project:
                self._apply(value, method, merge)

    def _on_job_error(self, exc: BaseException) -> None:
        self.failed.emit(exc)
        if isinstance(exc, WeightsUnavailableError):
            self.weights_unavailable.emit()

    def _on_job_finished(self, worker) -> None:
        kind = self.jobs.kind
        if self.session is not None and self.session.taught:
            self.taught.emit(dict(self.session.taught))
        if self.progress.maximum() == 0:  # ended during the model load or an export
            self._show_job_progress()
        self.state_changed.emit()
        if worker.abort_requested:
            self.message.emit(say.job_cancelled(kind), False)
        elif not self.jobs.failed and kind not in QUIET_JOBS:
            self.progress.setValue(self.progress.maximum())
            self.message.emit(say.job_done(kind), False)
        elif not self.jobs.failed:
            self.progress.setValue(self.progress.maximum())
            if kind in ("Update", "Preview") and self._setting_message:
                self.message.emit(self._setting_message, False)
        merge = self.jobs.take_pending()
        if merge is not None:
            self.request_redraw(merge=merge)

    def cancel(self) -> None:
        """Stop the running job after the image in progress."""
        if self.jobs.cancel():
            self.message.emit(say.job_cancelling(self.jobs.kind), False)
