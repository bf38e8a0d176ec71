"""The annotator's background work in napari worker threads: one job at a time (model loading, segmenting,
exporting) and the reads of a project or an image (only the latest request's result is shown).

Both only manage the workers' lifecycle; what a result means is the widget's (it passes the callbacks).
"""
from __future__ import annotations

from typing import Callable


class JobRunner:
    """The one running job: its worker, kind ("Segment all", "Export", ...), image count and whether it
    failed; `pending_merge` is a redraw waiting for it (merge or not)."""

    def __init__(self):
        self.worker = None
        self.activity = None  # the job's napari.utils.progress (napari's activity dock), while it runs
        self.kind = ""
        self.range = 1  # the job's image count (the progress bar is busy while the model loads)
        self.failed = False
        self.pending_merge: bool | None = None

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def create(self, fn: Callable, *args, kind: str, on_error: Callable, on_finished: Callable,
               on_yield: Callable | None = None, on_return: Callable | None = None, range: int | None = None):
        """A worker running fn(*args), made the running job; the caller starts it (`worker.start()`) once it
        has shown the job. on_finished(worker) is called once the job's worker ends. range: its image count
        (None keeps the last job's, as an export does)."""
        from napari.qt.threading import create_worker

        worker = create_worker(fn, *args, _ignore_errors=True)
        if on_yield is not None:
            worker.yielded.connect(on_yield)
        if on_return is not None:
            worker.returned.connect(on_return)

        def errored(exc):
            self.failed = True
            on_error(exc)

        worker.errored.connect(errored)
        worker.finished.connect(lambda: self._finished(worker, on_finished))
        self.worker, self.kind, self.failed = worker, kind, False
        if range is not None:
            self.range = max(range, 1)
        self._close_activity()
        from napari.utils import progress

        # napari's activity dock shows the job too (total 0: no count, as an export)
        self.activity = progress(total=self.range if range is not None else 0, desc=f"MaskCLIP: {kind}")
        return worker

    def report(self, done: int) -> None:
        """The running job has done `done` of its images (napari's activity dock follows)."""
        if self.activity is not None and done > self.activity.n:
            self.activity.update(done - self.activity.n)

    def _close_activity(self) -> None:
        if self.activity is not None:
            self.activity.close()
            self.activity = None

    def _finished(self, worker, on_finished: Callable) -> None:
        if worker is not self.worker:
            return
        self.worker = None
        self._close_activity()
        on_finished(worker)

    def cancel(self) -> bool:
        """Ask the running job to stop after the image in progress; False when none runs."""
        if self.worker is None:
            return False
        self.worker.quit()
        return True

    def take_pending(self) -> bool | None:
        merge, self.pending_merge = self.pending_merge, None
        return merge

    def add_pending(self, merge: bool) -> None:
        self.pending_merge = bool(self.pending_merge) or merge


class Loader:
    """Reads (a project, an image) in a worker; only the latest request's result is delivered."""

    def __init__(self, before: Callable[[], None]):
        self._before = before  # run in the worker first (waits for the saves queued before the read)
        self.worker = None
        self.token = 0

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def current(self, token: int) -> bool:
        """Whether `token` is the latest request's."""
        return token == self.token

    def start(self, job: Callable, *args, on_done: Callable, on_failed: Callable, on_finished: Callable):
        """A worker reading job(*args), made the latest request; the caller starts it (`worker.start()`)."""
        from napari.qt.threading import create_worker

        self.token += 1
        token = self.token
        before = self._before

        def read(*job_args):
            before()  # the edits saved before this read are in what it reads
            return job(*job_args)

        worker = create_worker(read, *args, _ignore_errors=True)
        worker.returned.connect(lambda result: token == self.token and on_done(result))
        worker.errored.connect(lambda exc: token == self.token and on_failed(exc))

        def finished():
            if worker is self.worker:
                self.worker = None
                on_finished()

        worker.finished.connect(finished)
        self.worker = worker
        return worker
