"""The MaskCLIP+ run folder: its layout, its writers (the trainer) and its readers (the annotator, scripts).

Qt-free and torch-free, so the annotator's training panel reads runs without loading the trainer.

Layout (PROJECT/runs/<YYYYmmdd-HHMMSS>/ when the annotator starts a run; any folder from the CLI)::

    config.json          the training configuration, classes and data source (written at start)
    progress.json        {iteration, total, phase, loss, state, ...}; state is running / done / failed /
                         cancelled. Replaced atomically, so a watcher never reads half of it
    metrics.jsonl        one JSON object per logged iteration (loss, lr, phase, images/s, time)
    checkpoints/last.pt  model + optimizer + AMP scaler + iteration; `--resume` continues from it
    student.pt           the trained student (weights + classes), what `maskclip refine` loads
    teacher/             cached MaskCLIP pseudo labels (maskclip.train.targets.TeacherCache)
    annotator.json       the command line the annotator started the run with (Resume reuses it)
    refine_progress.json {state, done, total, failed, started, updated}: `maskclip refine` with this run's
                         student (train.refine_project writes it at its start and after every image; state
                         running / done / failed). Replaced atomically. A file of its own, so a refine never
                         changes what progress.json says about the training (done, resumable ...)

Progress protocol: the trainer and refine report only through these files (the annotator polls them with
`read_progress` / `read_refine_progress`); nothing reads a child's stderr for progress.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from .atomic import atomic_write, remove_temp_files
from .errors import MaskCLIPError

RUNS_FOLDER = "runs"  # PROJECT/runs/<time>/: where the annotator starts runs
CONFIG_FILE = "config.json"
PROGRESS_FILE = "progress.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_FOLDER = "checkpoints"
CHECKPOINT_FILE = "last.pt"
STUDENT_FILE = "student.pt"
TEACHER_FOLDER = "teacher"
LAUNCH_FILE = "annotator.json"
REFINE_PROGRESS_FILE = "refine_progress.json"

# progress.json "state" values, and its "phase" while pseudo labels are computed (training phases are
# maskclip.train.loop.PHASE_GUIDED / PHASE_SELF)
STATE_RUNNING, STATE_DONE, STATE_FAILED, STATE_CANCELLED = "running", "done", "failed", "cancelled"
STATES = (STATE_RUNNING, STATE_DONE, STATE_FAILED, STATE_CANCELLED)
PHASE_PSEUDO_LABELS = "pseudo-labels"


class RunFolderError(MaskCLIPError):
    """A run folder's file is missing or damaged (the message names it)."""


def read_config(path: Path) -> dict:
    """A run's config.json, checked: a JSON object with a "train" object (its fields are checked by
    `maskclip.train.loop.TrainConfig.from_json`). Raises RunFolderError naming the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"nothing to resume: {path} does not exist (the run never started training, or the "
                             "file was deleted); start without --resume (cached pseudo labels are reused)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunFolderError(f"{path}: cannot read the run's configuration ({exc}); restore the file or start a "
                             "new run folder") from None
    if not isinstance(data, dict) or not isinstance(data.get("train"), dict):
        raise RunFolderError(f"{path}: malformed run configuration (it needs a 'train' object as maskclip train "
                             "writes it); restore the file or start a new run folder")
    return data


class RunFolder:
    """Paths, writers and readers of a run folder (only rank 0 writes)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.config = self.path / CONFIG_FILE
        self.progress = self.path / PROGRESS_FILE
        self.metrics = self.path / METRICS_FILE
        self.checkpoint = self.path / CHECKPOINTS_FOLDER / CHECKPOINT_FILE
        self.student = self.path / STUDENT_FILE
        self.teacher = self.path / TEACHER_FOLDER
        self.launch = self.path / LAUNCH_FILE
        self.refine_progress = self.path / REFINE_PROGRESS_FILE

    def create(self) -> "RunFolder":
        """Make the folders; temporary files of a killed run's saves (a checkpoint's can be large) are removed."""
        (self.path / CHECKPOINTS_FOLDER).mkdir(parents=True, exist_ok=True)
        remove_temp_files(self.path)
        remove_temp_files(self.path / CHECKPOINTS_FOLDER)
        return self

    def write_json(self, path: Path, data: dict) -> None:
        with atomic_write(path, "w") as f:
            json.dump(data, f, indent=1)

    def write_progress(self, **fields_) -> None:
        data = {"iteration": 0, "total": 0, "phase": None, "loss": None, "state": STATE_RUNNING}
        if self.progress.is_file():
            try:
                data.update(json.loads(self.progress.read_text()))
            except (OSError, ValueError):
                pass
        data.update(fields_, updated=time.time())
        self.write_json(self.progress, data)

    def read_progress(self) -> dict:
        return json.loads(self.progress.read_text())

    def write_refine_progress(self, *, done: int, total: int, failed: int = 0, state: str = STATE_RUNNING,
                              started: float | None = None) -> None:
        """refine_progress.json: images done of total (failed ones included), and the refine's state.
        `started` (time.time() of the refine's start) defaults to the value already in the file."""
        if started is None:
            started = (read_refine_progress(self.path) or {}).get("started", time.time())
        self.write_json(self.refine_progress, {"state": state, "done": int(done), "total": int(total),
                                               "failed": int(failed), "started": started, "updated": time.time()})

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_metrics(self, iteration: int) -> None:
        """Drop records after `iteration` (a resumed run rewrites them)."""
        if not self.metrics.is_file():
            return
        keep = []
        for ln in self.metrics.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(ln)
            except ValueError:  # a damaged line (e.g. a killed write): dropped, the records stay
                continue
            if isinstance(record, dict) and isinstance(record.get("iteration", 0), int) \
                    and record.get("iteration", 0) <= iteration:
                keep.append(ln)
        with atomic_write(self.metrics, "w") as f:
            f.write("".join(ln + "\n" for ln in keep))

    def has_student(self) -> bool:
        """Whether `maskclip refine` can use this run (student.pt written at the end of training)."""
        return self.student.is_file()


def runs_folder(project_root: str | os.PathLike) -> Path:
    return Path(project_root) / RUNS_FOLDER


def new_run_dir(project_root: str | os.PathLike, now: float | None = None) -> Path:
    """A fresh PROJECT/runs/<YYYYmmdd-HHMMSS> path (suffixed -2, -3 ... when taken); not created."""
    base = runs_folder(project_root) / time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def latest_run(project_root: str | os.PathLike) -> Path | None:
    """The project's most recently active run folder (by its progress.json, else the folder's mtime)."""
    folder = runs_folder(project_root)
    if not folder.is_dir():
        return None
    best, best_t = None, -1.0
    for run in folder.iterdir():
        if not run.is_dir():
            continue
        marker = run / PROGRESS_FILE
        try:
            t = (marker if marker.is_file() else run).stat().st_mtime
        except OSError:
            continue
        if t > best_t:
            best, best_t = run, t
    return best


def _read_object(path: Path) -> dict | None:
    """A JSON object file, or None when it is absent, unreadable or not an object (its writer replaces it
    atomically, so a reader sees the old or the new file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_progress(run_dir: str | os.PathLike) -> dict | None:
    """RUN_DIR/progress.json, or None while it does not exist (the trainer replaces it atomically)."""
    return _read_object(Path(run_dir) / PROGRESS_FILE)


def read_refine_progress(run_dir: str | os.PathLike) -> dict | None:
    """RUN_DIR/refine_progress.json (the last or the running `maskclip refine`), or None when absent."""
    return _read_object(Path(run_dir) / REFINE_PROGRESS_FILE)


def read_launch(run_dir: str | os.PathLike) -> dict | None:
    """RUN_DIR/annotator.json ({"train": [argv...]}), or None when absent or unreadable."""
    return _read_object(Path(run_dir) / LAUNCH_FILE)


def write_launch(run_dir: str | os.PathLike, train_args: list[str]) -> None:
    """Record the `maskclip train` arguments a run was started with (creates the run folder)."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / LAUNCH_FILE).write_text(json.dumps({"train": train_args}, indent=1), encoding="utf-8")


class MetricsTail:
    """Incremental reader of RUN_DIR/metrics.jsonl (one JSON record per logged iteration).

    Each poll reads only the bytes appended since the last one; a replaced or shortened file (a resumed
    run rewrites it without the records after its checkpoint) is read again from the start.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records: list[dict] = []
        self._offset = 0
        self._identity = None
        self._partial = b""

    @classmethod
    def of_run(cls, run_dir: str | os.PathLike) -> "MetricsTail":
        return cls(Path(run_dir) / METRICS_FILE)

    def _reset(self, identity) -> None:
        self.records, self._offset, self._identity, self._partial = [], 0, identity, b""

    def poll(self) -> bool:
        """Read what is new; True when `records` changed."""
        try:
            st = os.stat(self.path)
        except OSError:
            changed = bool(self.records)
            self._reset(None)
            return changed
        changed = False
        identity = (st.st_dev, st.st_ino)
        if identity != self._identity or st.st_size < self._offset:
            changed = bool(self.records)
            self._reset(identity)
        if st.st_size == self._offset:
            return changed
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return changed
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("iteration"), int) \
                    and isinstance(record.get("loss"), (int, float)) and math.isfinite(record["loss"]):
                self.records.append(record)
                changed = True
        return changed
