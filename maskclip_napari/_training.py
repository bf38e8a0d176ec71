"""The annotator's "Refine dataset (MaskCLIP+)" section: train a student in a child process, then refine.

Training runs as `python -m maskclip train PROJECT --run PROJECT/runs/<timestamp> ...` in a QProcess, so
the viewer never waits for it (and a crash of the trainer cannot take napari down). The section watches
the run folder the trainer writes (progress.json, metrics.jsonl) with a timer and shows the iteration,
phase, ETA and a loss curve. When training ends `done`, it runs `python -m maskclip refine` (also a
child process; verified pixels never change, previous labels stay in each image's history) and asks
the annotator to show the new labels.

Cancel sends SIGTERM: the trainer finishes the current iteration, writes a checkpoint and ends with
state `cancelled` (exit code 130); Resume runs the same command again with `--resume`. The command
line of each run is kept in RUN_DIR/annotator.json, so Resume (also after reopening napari) continues
with the run's own settings.

Closing the viewer window or quitting napari while a child runs cancels it the same way (the decision:
no training outlives the annotator that shows it): SIGTERM, then up to SHUTDOWN_WAIT_S seconds for the
checkpoint, then SIGKILL (the last periodic checkpoint remains). The child is always waited for, so no
zombie and no orphan keeps the CPU or GPU busy; after reopening, the section shows the cancelled run
and Resume continues it. (A window close that napari's own confirmation dialog then refuses has
cancelled the run all the same.) Long runs that must survive the viewer belong on the command line:
`maskclip train` then `maskclip refine`; the section shows such a run's progress when it opens the
project. Labels are safe: training only reads them, and refine commits each image atomically (an
interrupted refine leaves every image with either its old or its refined labels). The annotator saves
its own pending edits before refine starts and again before it reloads the refined labels; a stroke
made on the current image while refine runs is saved over that image's refined labels (the refined
version stays in the image's history).

The parts that need no display (reading the run folder, the ETA, the commands, error summaries, the
curve's geometry) are plain functions, tested without Qt.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections import deque
from pathlib import Path
from typing import Sequence

from qtpy.QtCore import QEvent, QPointF, QProcess, QProcessEnvironment, QRectF, Qt, QTimer
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

RUNS_FOLDER = "runs"
LAUNCH_FILE = "annotator.json"  # the command line the annotator started a run with (Resume reuses it)
POLL_MS = 400
SHUTDOWN_WAIT_S = 30.0
EXIT_CANCELLED = 130
ERROR_LINES = 6
# maskclip.train.student.STUDENTS plus "auto"; not imported here, because importing the trainer pulls
# torchvision into the viewer process (tests/test_gui_training.py checks the two lists agree).
STUDENTS = (
    ("auto", "auto (LR-ASPP on CPU, DeepLabV3-ResNet-101 on GPU)"),
    ("lraspp_mobilenet_v3_large", "LR-ASPP MobileNetV3 (lightest)"),
    ("deeplabv3_mobilenet_v3_large", "DeepLabV3 MobileNetV3"),
    ("deeplabv3_resnet50", "DeepLabV3 ResNet-50"),
    ("deeplabv3_resnet101", "DeepLabV3 ResNet-101 (the paper's)"),
)
# the self-training choices: key, share of the iterations trained on MaskCLIP's labels before the student's
# own predictions take over (None: the trainer decides), text
SELF_TRAINING = (
    ("auto", None, "auto (after 1/10 with ImageNet weights, off without)"),
    ("paper", 0.1, "after 1/10 of the iterations (the paper)"),
    ("half", 0.5, "after half of the iterations"),
    ("off", 1.0, "off (MaskCLIP labels and verified pixels only)"),
)
GUIDED_FRACTIONS = {key: fraction for key, fraction, _ in SELF_TRAINING}
PHASE_COLOURS = {"guided": "#e6a23c", "self-training": "#4a9eff"}


# ================================================================================================
# The run folder (no Qt)
# ================================================================================================
def new_run_dir(project_root: str | os.PathLike, now: float | None = None) -> Path:
    """A fresh PROJECT/runs/<YYYYmmdd-HHMMSS> path (suffixed -2, -3 ... when taken); not created."""
    base = Path(project_root) / RUNS_FOLDER / time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def latest_run(project_root: str | os.PathLike) -> Path | None:
    """The project's most recently active run folder (by its progress.json, else the folder's mtime)."""
    folder = Path(project_root) / RUNS_FOLDER
    if not folder.is_dir():
        return None
    best, best_t = None, -1.0
    for run in folder.iterdir():
        if not run.is_dir():
            continue
        marker = run / "progress.json"
        try:
            t = (marker if marker.is_file() else run).stat().st_mtime
        except OSError:
            continue
        if t > best_t:
            best, best_t = run, t
    return best


def read_progress(run_dir: str | os.PathLike) -> dict | None:
    """RUN_DIR/progress.json, or None while it does not exist (the trainer replaces it atomically)."""
    try:
        data = json.loads((Path(run_dir) / "progress.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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


def estimate_eta(records: Sequence[dict], total: int, since: float | None = None) -> float | None:
    """Seconds left at the pace of the logged records (only those written after `since`, the start of
    the current process: records from before a resume would make the pace look slower)."""
    recs = [r for r in records if isinstance(r.get("time"), (int, float)) and (since is None or r["time"] >= since)]
    if len(recs) < 2:
        return None
    first, last = recs[0], recs[-1]
    done, seconds = last["iteration"] - first["iteration"], last["time"] - first["time"]
    if done <= 0 or seconds <= 0:
        return None
    return max(0.0, (total - last["iteration"]) * seconds / done)


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def describe_progress(progress: dict | None, eta: float | None = None, running: bool = True) -> str:
    """One status line from progress.json (and an ETA). A run with no progress.json whose process is not
    running (killed before its first progress report) failed; it is not still starting."""
    if not progress:
        return "starting…" if running else "failed before its first progress report (nothing to resume)"
    state, phase = progress.get("state", "running"), progress.get("phase")
    if state == "running" and phase == "pseudo-labels":
        done, total = progress.get("teacher_done"), progress.get("teacher_total")
        return f"MaskCLIP pseudo labels {done}/{total}" if total else "loading the CLIP model…"
    parts = [f"iteration {progress.get('iteration', 0)}/{progress.get('total', 0)}"]
    if phase:
        parts.append(str(phase))
    loss = progress.get("loss")
    if isinstance(loss, (int, float)):
        parts.append(f"loss {loss:.3f}")
    if state == "running":
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
    else:
        parts.append(state)
    return " · ".join(parts)


def train_arguments(project_root, run_dir, *, model: str, pretrained: str | None, device: str, iters: int,
                    student: str, batch_size: int, crop_size: int, base_size: int,
                    imagenet: bool, guided_fraction: float | None = None) -> list[str]:
    """`maskclip train` arguments (after `-m maskclip`) for a new run. pretrained None = random weights."""
    args = ["train", str(Path(project_root).resolve()), "--run", str(Path(run_dir).resolve()),
            "--model", model, "--pretrained", "none" if pretrained is None else str(pretrained),
            "--device", device, "--iters", str(iters), "--student", student, "--batch-size", str(batch_size),
            "--crop-size", str(crop_size), "--base-size", str(base_size)]
    if not imagenet:
        args.append("--no-imagenet")
    if guided_fraction is not None:
        args += ["--guided-fraction", str(guided_fraction)]
    return args


def resume_arguments(project_root, run_dir, device: str) -> list[str]:
    """`maskclip train ... --resume` for a run: its recorded command line when the annotator started it,
    otherwise (a run from the command line) the run's saved configuration on `device`."""
    try:
        saved = json.loads((Path(run_dir) / LAUNCH_FILE).read_text(encoding="utf-8"))["train"]
        if isinstance(saved, list) and saved[:1] == ["train"]:
            return [*saved, "--resume"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return ["train", str(Path(project_root).resolve()), "--run", str(Path(run_dir).resolve()), "--device", device,
            "--resume"]


def refine_arguments(project_root, run_dir, device: str) -> list[str]:
    return ["refine", str(Path(project_root).resolve()), "--run", str(Path(run_dir).resolve()), "--device", device]


def split_output_lines(text: str) -> list[str]:
    """Lines of a child's stderr; tqdm's carriage-return redraws count as lines too."""
    return [ln.rstrip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]


_TQDM = re.compile(r"(\d+)/(\d+) \[")


def tqdm_counts(line: str) -> tuple[int, int] | None:
    """(done, total) of a tqdm progress line such as 'refine:  67%|###  | 2/3 [00:01<...]'."""
    m = _TQDM.search(line)
    return (int(m.group(1)), int(m.group(2))) if m else None


def error_summary(lines: Sequence[str], progress: dict | None = None, exit_code: int | None = None) -> str:
    """What went wrong, from a child's last stderr lines: tracebacks are reduced to their exception line,
    progress bars dropped; the run's recorded error or the exit code when stderr says nothing."""
    kept, in_traceback = [], False
    for line in lines:
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
            continue
        if in_traceback and (line.startswith(" ") or line.startswith("\t")):
            continue
        in_traceback = False
        if tqdm_counts(line) or "%|" in line:
            continue
        kept.append(line)
    kept = kept[-ERROR_LINES:]
    if not kept and progress and progress.get("error"):
        kept = [str(progress["error"])]
    if not kept:
        kept = [f"the process ended with exit code {exit_code}" if exit_code is not None else "the process failed"]
    return "\n".join(kept)


def loss_range(losses: Sequence[float]) -> tuple[float, float, bool]:
    """(low, high, logarithmic) y range of a loss curve: logarithmic when it spans over a factor 20 (the
    first iterations' loss would otherwise flatten the rest)."""
    lo, hi = min(losses), max(losses)
    if lo > 0 and hi / lo > 20:
        return lo, hi, True
    lo = min(0.0, lo)
    return lo, (hi if hi > lo else lo + 1.0), False


def curve_points(records: Sequence[dict], total: int, width: float, height: float) -> list[tuple[float, float]]:
    """Pixel positions of the records' losses in a width x height box (x: iteration 0..total, y: the
    loss_range, high values at the top)."""
    if not records:
        return []
    losses = [float(r["loss"]) for r in records]
    lo, hi, log = loss_range(losses)
    f = math.log10 if log else (lambda v: v)
    span = (f(hi) - f(lo)) or 1.0
    xmax = max(total, records[-1]["iteration"], 1)
    return [(r["iteration"] / xmax * width, height - (f(v) - f(lo)) / span * height) for r, v in zip(records, losses)]


# ================================================================================================
# Widgets
# ================================================================================================
def _alive(obj) -> bool:
    """Whether a Qt object's C++ side still exists (any binding: using a deleted one raises)."""
    try:
        obj.objectName()
    except RuntimeError:
        return False
    return True


class LossPlot(QWidget):
    """The training loss against the iteration, coloured by phase (guided / self-training), drawn with
    QPainter: small and with no plotting dependency."""

    MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP, MARGIN_RIGHT = 42, 16, 14, 8

    def __init__(self, parent=None):
        super().__init__(parent)
        self.records: list[dict] = []
        self.total = 0
        self.setMinimumHeight(130)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_data(self, records: Sequence[dict], total: int) -> None:
        self.records, self.total = list(records), int(total)
        self.update()

    def paintEvent(self, event):
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().color(QPalette.ColorRole.WindowText)
        faint = QColor(text)
        faint.setAlpha(60)
        font = p.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
        p.setFont(font)
        box = QRectF(self.MARGIN_LEFT, self.MARGIN_TOP, self.width() - self.MARGIN_LEFT - self.MARGIN_RIGHT,
                     self.height() - self.MARGIN_TOP - self.MARGIN_BOTTOM)
        p.setPen(QPen(faint, 1))
        p.drawRect(box)
        p.setPen(text)
        if not self.records:
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, "loss curve: no iterations logged yet")
            p.end()
            return
        losses = [float(r["loss"]) for r in self.records]
        lo, hi, log = loss_range(losses)
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        label_w = self.MARGIN_LEFT - 4
        p.drawText(QRectF(0, box.top() - 7, label_w, 14), right, f"{hi:.3g}")
        p.drawText(QRectF(0, box.bottom() - 7, label_w, 14), right, f"{lo:.3g}")
        p.drawText(QRectF(0, box.center().y() - 7, label_w, 14), right, "log" if log else "loss")
        xmax = max(self.total, self.records[-1]["iteration"], 1)
        p.drawText(QRectF(box.left(), box.bottom() + 1, box.width(), 14), Qt.AlignmentFlag.AlignLeft, "0")
        p.drawText(QRectF(box.left(), box.bottom() + 1, box.width(), 14), Qt.AlignmentFlag.AlignRight,
                   f"{xmax} iterations")
        points = curve_points(self.records, self.total, box.width(), box.height())
        # one path per phase run, joined to the previous point so the curve stays continuous
        prev, path, phase = None, None, None
        for rec, (x, y) in zip(self.records, points):
            pt = QPointF(box.left() + x, box.top() + y)
            if rec.get("phase") != phase:
                if path is not None:
                    self._stroke(p, path, phase)
                phase, path = rec.get("phase"), QPainterPath(prev if prev is not None else pt)
            path.lineTo(pt)
            prev = pt
        self._stroke(p, path, phase)
        # legend
        x = box.right() - 4
        for name in reversed([ph for ph in PHASE_COLOURS if any(r.get("phase") == ph for r in self.records)]):
            w = p.fontMetrics().horizontalAdvance(name)
            p.setPen(QColor(PHASE_COLOURS[name]))
            p.drawText(QRectF(x - w, box.top() + 2, w, 14), right, name)
            x -= w + 10
        p.end()

    @staticmethod
    def _stroke(p: QPainter, path: QPainterPath, phase) -> None:
        p.setPen(QPen(QColor(PHASE_COLOURS.get(phase, "#bbbbbb")), 1.6))
        p.drawPath(path)


class TrainingSection(QGroupBox):
    """"Refine dataset (MaskCLIP+)": settings, Start / Cancel / Resume / Refine, progress, loss curve.

    `host` is the AnnotatorWidget; the section uses its `project`, `viewer`, `model_choice()`,
    `save_current()` and `refresh_from_project()`.
    """

    def __init__(self, host):
        super().__init__("Refine dataset (MaskCLIP+)")
        self.host = host
        self.run_dir: Path | None = None
        self.stage = ""  # "train" / "refine" while a child runs
        self.refine_summary: dict | None = None
        self._proc: QProcess | None = None
        self._project_root: Path | None = None  # the project the running child works on
        self._started_at = 0.0
        self._stderr: deque[str] = deque(maxlen=200)
        self._stderr_partial = ""
        self._stdout = ""
        self._metrics: MetricsTail | None = None
        self._progress: dict | None = None
        self._shutting_down = False
        self._watched = None  # the top-level window whose closing ends the child
        self._build_ui()
        self._timer = QTimer(self, interval=POLL_MS)
        self._timer.timeout.connect(self.poll)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        self._set_enabled()

    # --- UI -------------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        v = QVBoxLayout(self)
        intro = QLabel("Trains a segmentation network on MaskCLIP's labels and your verified pixels, "
                       "then relabels every image with it (verified pixels never change).")
        intro.setWordWrap(True)
        v.addWidget(intro)
        form = QFormLayout()
        self.iters_spin = QSpinBox()
        self.iters_spin.setRange(1, 1_000_000)
        self.iters_spin.setSingleStep(100)
        self.iters_spin.setValue(2000)
        self.iters_spin.setToolTip("Training iterations (see Advanced → Self-training for how they are split "
                                   "between MaskCLIP's labels and the network's own predictions)")
        self.student_combo = QComboBox()
        for name, text in STUDENTS:
            self.student_combo.addItem(text, name)
        self.student_combo.setToolTip("The network trained; LR-ASPP is quick enough for a CPU")
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        form.addRow("Iterations", self.iters_spin)
        form.addRow("Network", self.student_combo)
        form.addRow("Device", self.device_combo)
        v.addLayout(form)

        advanced = QCollapsible("Advanced")
        inner = QWidget()
        aform = QFormLayout(inner)
        aform.setContentsMargins(0, 0, 0, 0)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 512)
        self.batch_spin.setValue(8)
        self.crop_spin = QSpinBox()
        self.crop_spin.setRange(32, 2048)
        self.crop_spin.setSingleStep(32)
        self.crop_spin.setValue(512)
        self.crop_spin.setSuffix(" px")
        self.crop_spin.setToolTip("Side of the random training crops (smaller: faster, less context)")
        self.base_spin = QSpinBox()
        self.base_spin.setRange(32, 4096)
        self.base_spin.setSingleStep(32)
        self.base_spin.setValue(512)
        self.base_spin.setSuffix(" px")
        self.base_spin.setToolTip("Images are resized to this short side (then scaled 0.5-2x) for training "
                                  "and to it for refining")
        self.imagenet_check = QCheckBox("ImageNet backbone weights")
        self.imagenet_check.setChecked(True)
        self.imagenet_check.setToolTip("Start from torchvision's ImageNet weights (downloaded once); without "
                                       "them training needs many more iterations")
        aform.addRow("Batch size", self.batch_spin)
        aform.addRow("Crop size", self.crop_spin)
        aform.addRow("Short side", self.base_spin)
        aform.addRow(self.imagenet_check)
        self.self_training_combo = QComboBox()
        for key, _, text in SELF_TRAINING:
            self.self_training_combo.addItem(text, key)
        self.self_training_combo.setToolTip("When the network starts learning from its own predictions instead of "
                                            "MaskCLIP's labels (verified pixels always stay ground truth). A "
                                            "network without ImageNet weights collapses onto the commonest "
                                            "classes when it self-trains early.")
        aform.addRow("Self-training", self.self_training_combo)
        advanced.addWidget(inner)
        v.addWidget(advanced)

        row = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Train in a new run folder (PROJECT/runs/...), then refine the labels")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current iteration; a checkpoint is kept for Resume")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the last run from its checkpoint, then refine")
        self.refine_button = QPushButton("Refine")
        self.refine_button.setToolTip("Relabel every image with the last run's trained network")
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(self.resume)
        self.refine_button.clicked.connect(self.refine)
        for b in (self.start_button, self.cancel_button, self.resume_button, self.refine_button):
            row.addWidget(b)
        v.addLayout(row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("")
        v.addWidget(self.progress_bar)
        self.status_label = QLabel("No training run yet.")
        self.status_label.setWordWrap(True)
        v.addWidget(self.status_label)
        self.plot = LossPlot()
        v.addWidget(self.plot)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v.addWidget(self.message)

    def configure(self, *, iters: int | None = None, student: str | None = None, device: str | None = None,
                  batch_size: int | None = None, crop_size: int | None = None, base_size: int | None = None,
                  imagenet: bool | None = None, self_training: str | None = None) -> None:
        """Set the section's fields (those given) as a user would; for scripts and tests."""
        if student is not None:
            index = self.student_combo.findData(student)
            if index < 0:
                raise ValueError(f"unknown student {student!r}; choose from {[n for n, _ in STUDENTS]}")
            self.student_combo.setCurrentIndex(index)
        if device is not None:
            self.device_combo.setCurrentText(device)
        for spin, value in ((self.iters_spin, iters), (self.batch_spin, batch_size), (self.crop_spin, crop_size),
                            (self.base_spin, base_size)):
            if value is not None:
                spin.setValue(value)
        if imagenet is not None:
            self.imagenet_check.setChecked(imagenet)
        if self_training is not None:
            index = self.self_training_combo.findData(self_training)
            if index < 0:
                raise ValueError(f"self_training must be one of {list(GUIDED_FRACTIONS)}")
            self.self_training_combo.setCurrentIndex(index)

    def _show_message(self, text: str, error: bool = False) -> None:
        self.message.setStyleSheet("color: #e05555;" if error else "")
        self.message.setText(text)

    @property
    def running(self) -> bool:
        return self._proc is not None

    def _set_enabled(self) -> None:
        project = self.host.project
        idle = not self.running
        progress = read_progress(self.run_dir) if self.run_dir is not None else None
        state = (progress or {}).get("state")
        resumable = self.run_dir is not None and state in ("cancelled", "failed", "running")
        self.start_button.setEnabled(idle and project is not None)
        self.cancel_button.setEnabled(not idle)
        self.resume_button.setEnabled(idle and resumable)
        self.refine_button.setEnabled(idle and self.run_dir is not None and (self.run_dir / "student.pt").is_file())
        for w in (self.iters_spin, self.student_combo, self.device_combo, self.batch_spin, self.crop_spin,
                  self.base_spin, self.imagenet_check, self.self_training_combo):
            w.setEnabled(idle)

    # --- project --------------------------------------------------------------------------------
    def set_project(self, project) -> None:
        """Show the project's latest run (e.g. one cancelled when napari last closed), unless a child of
        this section is running (it keeps its own project and run)."""
        if self.running:
            return
        self.device_combo.setCurrentText(self.host.model_choice().device)
        self.run_dir = latest_run(project.root) if project is not None else None
        self._metrics = MetricsTail(self.run_dir / "metrics.jsonl") if self.run_dir is not None else None
        self.plot.set_data([], 0)
        self._show_message("")
        self.poll()
        if self.run_dir is None:
            self.status_label.setText("No training run yet.")
        else:
            state = (self._progress or {}).get("state")
            note = {"running": " (not running in this session: Resume continues it)",
                    "cancelled": " (Resume continues it)"}.get(state, "")
            self.status_label.setText(f"Last run {self.run_dir.name}: {self.status_label.text()}{note}")
        self._set_enabled()

    # --- actions --------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start a new run with the section's settings and the annotator's model. False when it cannot."""
        project = self.host.project
        if project is None or self.running:
            return False
        if not project.classes:
            self._show_message("Add classes before training.", error=True)
            return False
        self.host.save_current(wait=True)
        choice = self.host.model_choice()
        run_dir = new_run_dir(project.root)
        args = train_arguments(project.root, run_dir, model=choice.name, pretrained=choice.weights,
                               device=self.device_combo.currentText(), iters=self.iters_spin.value(),
                               student=self.student_combo.currentData(), batch_size=self.batch_spin.value(),
                               crop_size=self.crop_spin.value(), base_size=self.base_spin.value(),
                               imagenet=self.imagenet_check.isChecked(),
                               guided_fraction=GUIDED_FRACTIONS[self.self_training_combo.currentData()])
        try:
            run_dir.mkdir(parents=True)
            (run_dir / LAUNCH_FILE).write_text(json.dumps({"train": args}, indent=1), encoding="utf-8")
        except OSError as exc:
            self._show_message(f"Cannot create the run folder {run_dir}: {exc}", error=True)
            return False
        return self._launch("train", args, project.root, run_dir)

    def resume(self) -> bool:
        project = self.host.project
        if self.running or self.run_dir is None or project is None:
            return False
        self.host.save_current(wait=True)
        return self._launch("train", resume_arguments(project.root, self.run_dir, self.device_combo.currentText()),
                            project.root, self.run_dir)

    def refine(self) -> bool:
        """Relabel the shown project with its current run's student (the Refine button)."""
        project = self.host.project
        if self.running or self.run_dir is None or project is None:
            return False
        self.host.save_current(wait=True)
        return self._launch("refine", refine_arguments(project.root, self.run_dir, self.device_combo.currentText()),
                            project.root, self.run_dir)

    def cancel(self) -> None:
        """SIGTERM: training ends after the current iteration with a checkpoint (state cancelled)."""
        if self._proc is not None:
            self._proc.terminate()
            self._show_message(f"Cancelling the {self.stage}…")
            self.cancel_button.setEnabled(False)

    # --- the child process ----------------------------------------------------------------------
    def _launch(self, stage: str, args: list[str], project_root: Path, run_dir: Path) -> bool:
        proc = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        proc.setProcessEnvironment(env)
        proc.setProgram(sys.executable)
        proc.setArguments(["-m", "maskclip", *args])
        proc.readyReadStandardError.connect(self._read_stderr)
        proc.readyReadStandardOutput.connect(self._read_stdout)
        proc.finished.connect(lambda code, status: self._on_finished(proc, code, status))
        proc.errorOccurred.connect(lambda err: self._on_error(proc, err))
        self._proc, self.stage = proc, stage
        self._project_root, self.run_dir = Path(project_root), Path(run_dir)
        self._stderr.clear()
        self._stderr_partial, self._stdout = "", ""
        self._started_at = time.time()
        if stage == "train":
            self._metrics = MetricsTail(self.run_dir / "metrics.jsonl")  # a resumed run's curve is read again
            self.plot.set_data([], 0)
            self.refine_summary = None
        self._show_message("")
        self.status_label.setText("Starting the training process…" if stage == "train" else "Refining the labels…")
        self.progress_bar.setRange(0, 0)  # busy until the first progress report
        self.progress_bar.setFormat(stage)
        self._watch_window()
        proc.start()
        self._timer.start()
        self._set_enabled()
        return True

    def _read_stderr(self) -> None:
        if self._proc is None:
            return
        text = self._stderr_partial + bytes(self._proc.readAllStandardError()).decode("utf-8", "replace")
        # keep an unfinished line for the next read (tqdm ends its redraws with \r, so those count)
        cut = max(text.rfind("\n"), text.rfind("\r"))
        self._stderr_partial = text[cut + 1:]
        lines = split_output_lines(text[:cut + 1])
        self._stderr.extend(lines)
        if self.stage == "refine":
            counts = [c for c in map(tqdm_counts, lines) if c]
            if counts and counts[-1][1] > 0:
                done, total = counts[-1]
                self.progress_bar.setRange(0, total)
                self.progress_bar.setValue(done)
                self.progress_bar.setFormat("refine %v/%m images")

    def _read_stdout(self) -> None:
        if self._proc is not None:
            self._stdout += bytes(self._proc.readAllStandardOutput()).decode("utf-8", "replace")

    def poll(self) -> None:
        """Show the run folder's progress and loss curve (timer; cheap: two small reads)."""
        if self.run_dir is None or (self.running and self.stage == "refine"):
            return
        self._progress = progress = read_progress(self.run_dir)
        if self._metrics is not None and self._metrics.poll():
            self.plot.set_data(self._metrics.records, (progress or {}).get("total", 0))
        elif progress and progress.get("total") != self.plot.total:
            self.plot.set_data(self.plot.records, progress.get("total", 0))
        eta = None
        if progress and self._metrics is not None:
            eta = estimate_eta(self._metrics.records, progress.get("total", 0),
                               since=self._started_at if self.running else None)
        self.status_label.setText(describe_progress(progress, eta, running=self.running))
        if not progress:
            return
        if progress.get("phase") == "pseudo-labels" and progress.get("state") == "running":
            total = int(progress.get("teacher_total") or 0)
            if total:
                self.progress_bar.setRange(0, total)
                self.progress_bar.setValue(int(progress.get("teacher_done") or 0))
                self.progress_bar.setFormat("pseudo labels %v/%m")
            return
        total = int(progress.get("total") or 0)
        if total:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(int(progress.get("iteration") or 0), total))
            self.progress_bar.setFormat(f"{progress.get('phase') or 'training'} %v/%m")

    def _on_error(self, proc: QProcess, error) -> None:
        if error == QProcess.ProcessError.FailedToStart and proc is self._proc:
            self._finish(f"Could not start {sys.executable} -m maskclip: {proc.errorString()}", failed=True)

    def _on_finished(self, proc: QProcess, code: int, status) -> None:
        if proc is not self._proc:
            return
        if not _alive(proc):
            # the section is being deleted with no Close or quit first: Qt's QProcess destructor killed
            # and reaped the child (the last periodic checkpoint remains); nothing is left to show it
            self._proc = None
            return
        self._read_stderr()
        if self._stderr_partial.strip():
            self._stderr.append(self._stderr_partial.strip())
            self._stderr_partial = ""
        self._read_stdout()
        stage = self.stage
        crashed = status == QProcess.ExitStatus.CrashExit
        if stage == "refine":
            self._finish_refine(code, crashed)
            return
        self.poll()
        progress = self._progress or {}
        state = progress.get("state")
        if not crashed and code == 0 and state == "done":
            if self._shutting_down:
                self._finish("Training done; the labels were not refined (napari closed). Press Refine.")
                return
            self._end_process()
            self._show_message("Training done; refining the labels…")
            self._launch("refine", refine_arguments(self._project_root, self.run_dir, self.device_combo.currentText()),
                         self._project_root, self.run_dir)
        elif not crashed and (code == EXIT_CANCELLED or state == "cancelled"):
            self._finish(f"Cancelled at iteration {progress.get('iteration', 0)}/{progress.get('total', 0)}; "
                         "the checkpoint is kept: Resume continues.")
        elif crashed:
            self._finish("The training process was killed. " + error_summary(list(self._stderr), progress)
                         + "\nResume continues from the last checkpoint.", failed=True)
        else:
            self._finish("Training failed:\n" + error_summary(list(self._stderr), progress, code), failed=True)

    def _finish_refine(self, code: int, crashed: bool) -> None:
        summary = None
        for line in reversed(self._stdout.splitlines()):
            try:
                summary = json.loads(line)
                break
            except ValueError:
                continue
        same = self._shows_own_project()
        # exit code 1 with a summary: the batch ran and skipped images it could not read (named in "failed")
        if not crashed and code in (0, 1) and isinstance(summary, dict) and (code == 0 or summary.get("failed")):
            self.refine_summary = summary
            self._end_process()
            if same and not self._shutting_down:
                self.host.refresh_from_project()
            skipped = [str(item.get("id")) for item in summary.get("failed", []) if isinstance(item, dict)]
            note = f" Skipped {len(skipped)} unreadable: {', '.join(skipped[:5])}." if skipped else ""
            self._finish(f"Refined {summary.get('refined', 0)} images ({summary.get('changed_pixels', 0)} pixels "
                         "changed; verified pixels kept). The previous labels are in each image's history." + note,
                         failed=bool(skipped))
            return
        if same and not self._shutting_down:
            self.host.refresh_from_project()  # the images refined before the failure show their new labels
        self._finish("Refining failed:\n" + error_summary(list(self._stderr), None, code), failed=True)

    def _end_process(self) -> None:
        proc, self._proc = self._proc, None
        self._timer.stop()
        if proc is not None:
            proc.deleteLater()

    def _shows_own_project(self) -> bool:
        """Whether the annotator still shows the project the child works on."""
        project = self.host.project
        return project is not None and self._project_root is not None and \
            Path(project.root).resolve() == self._project_root.resolve()

    def _finish(self, text: str, failed: bool = False) -> None:
        self._end_process()
        self.stage = ""
        if self.host.project is not None and not self._shows_own_project():
            text = f"{self._project_root}: {text}"  # the user opened another project meanwhile
            self.set_project(self.host.project)
        else:
            self.poll()
        if self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setFormat("")
        self._show_message(text, error=failed)
        self._set_enabled()

    # --- shutdown ---------------------------------------------------------------------------------
    def _watch_window(self) -> None:
        """Filter the events of the viewer's main window (the root of the parent chain, also when the dock
        floats): its Close event is the moment to stop a child, before Qt tears the widgets down."""
        root = self
        while root.parent() is not None:
            root = root.parent()
        if root is not self and root is not self._watched:
            if self._watched is not None:
                self._watched.removeEventFilter(self)
            root.installEventFilter(self)
            self._watched = root

    def eventFilter(self, obj, event):
        if obj is self._watched and event.type() == QEvent.Type.Close and self.running:
            self.shutdown()
        return False

    def shutdown(self) -> None:
        """End a running child before napari goes away: SIGTERM (training checkpoints and ends
        `cancelled`), wait up to SHUTDOWN_WAIT_S, then SIGKILL. The child is reaped either way; no
        refine follows (a training that was just finishing leaves Refine to press next time)."""
        proc = self._proc
        if proc is None:
            return
        self._shutting_down = True
        try:
            self._timer.stop()
            proc.terminate()
            if not proc.waitForFinished(int(SHUTDOWN_WAIT_S * 1000)):
                proc.kill()
                proc.waitForFinished(5000)
            if self._proc is proc:  # `finished` was not delivered
                self._finish("The process was stopped because napari closed.")
        finally:
            self._shutting_down = False
