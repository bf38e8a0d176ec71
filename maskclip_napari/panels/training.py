"""The "Refine dataset (MaskCLIP+)" panel: train a student in a child process, then refine.

Training runs as `python -m maskclip train PROJECT --run PROJECT/runs/<timestamp> ...` (`_child_process`), so
the viewer never waits for it (and a crash of the trainer cannot take napari down). The panel watches the run
folder the trainer writes (progress.json, metrics.jsonl) with a timer and shows the iteration, phase, ETA and
a loss curve. When training ends `done`, it runs `python -m maskclip refine` (also a child process; verified
pixels never change, previous labels stay in each image's history) and emits `labels_changed` so the
annotator shows the new labels.

Cancel sends SIGTERM: the trainer finishes the current iteration, writes a checkpoint and ends with state
`cancelled` (exit code 130); Resume runs the same command again with `--resume`. The command line of each
run is kept in RUN_DIR/annotator.json, so Resume (also after reopening napari) continues with the run's own
settings.

Closing the viewer window or quitting napari while a child runs cancels it the same way (the decision: no
training outlives the annotator that shows it): SIGTERM, then up to SHUTDOWN_WAIT_S seconds for the
checkpoint, then SIGKILL (the last periodic checkpoint remains). The child is always waited for, so no zombie
and no orphan keeps the CPU or GPU busy; after reopening, the panel shows the cancelled run and Resume
continues it. (A window close that napari's own confirmation dialog then refuses has cancelled the run all
the same.) Long runs that must survive the viewer belong on the command line: `maskclip train` then
`maskclip refine`; the panel shows such a run's progress when it opens the project. Labels are safe:
training only reads them, and refine commits each image atomically. Before a child starts, the panel emits
`save_requested` (the annotator writes its pending edits, synchronously); a stroke made on the current image
while refine runs is saved over that image's refined labels (the refined version stays in its history).

Talks upward by signals: `save_requested` (write pending edits now) and `labels_changed` (another process
wrote labels: show them). The project is given by `set_project`; the model by the `model_choice` callable.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from qtpy.QtCore import QEvent, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from .. import _wording as say
from .._child_process import EXIT_CANCELLED, ChildProcess
from .._loss_plot import LossPlot
from ._narrow import NarrowCombo
from maskclip.defaults import CLIP_STUDENT_TRAIN_DEFAULTS, TORCHVISION_STUDENT_TRAIN_DEFAULTS
from maskclip.student_names import DEFAULT_CPU_STUDENT, DEFAULT_GPU_STUDENT, DESCRIPTIONS, STUDENT_NAMES
from maskclip.run_folder import (
    PHASE_PSEUDO_LABELS,
    STATE_CANCELLED,
    STATE_DONE,
    STATE_FAILED,
    STATE_RUNNING,
    MetricsTail,
    RunFolder,
    latest_run,
    new_run_dir,
    read_progress,
    read_refine_progress,
    write_launch,
)

from .._run_commands import (
    usable_devices,
    describe_progress,
    describe_refine_progress,
    error_summary,
    estimate_eta,
    refine_arguments,
    resume_arguments,
    train_arguments,
)

POLL_MS = 400
SHUTDOWN_WAIT_S = 30.0


def student_choices() -> list[tuple[str, str]]:
    """(key, text) of each network the trainer offers (`maskclip.student_names`: no torch at start-up), after
    "auto", the command line's default."""
    return [(AUTO_STUDENT, f"auto ({DEFAULT_CPU_STUDENT} on CPU, {DEFAULT_GPU_STUDENT} on GPU)"),
            *((name, f"{name}: {DESCRIPTIONS[name]}") for name in STUDENT_NAMES)]


AUTO_STUDENT = "auto"  # what `maskclip train` uses without --student (TrainConfig.student)
# the self-training choices: key, share of the iterations trained on MaskCLIP's labels before the student's
# own predictions take over (None: the trainer decides), text
SELF_TRAINING = (
    ("auto", None, "auto (after 1/10 for a DeepLab / LR-ASPP with ImageNet weights, else off)"),
    ("paper", 0.1, "after 1/10 of the iterations (the paper)"),
    ("half", 0.5, "after half of the iterations"),
    ("off", 1.0, "off (MaskCLIP labels and verified pixels only)"),
)
GUIDED_FRACTIONS = {key: fraction for key, fraction, _ in SELF_TRAINING}


def _auto_spin(high: int, step: int, field: str, tip: str = "") -> QSpinBox:
    """A spin box whose lowest value, 0, reads "auto": the command line's default for the chosen network
    (maskclip.defaults: the clip student's measured recipe or the torchvision students'); 0 passes no flag."""
    spin = _spin(0, high, 0, step, tip=tip)
    spin.setSpecialValueText(f"auto ({CLIP_STUDENT_TRAIN_DEFAULTS[field]} clip, "
                             f"{TORCHVISION_STUDENT_TRAIN_DEFAULTS[field]} others)")
    return spin


def _spin(low: int, high: int, value: int, step: int = 1, suffix: str = "", tip: str = "") -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setSuffix(suffix)
    if tip:
        spin.setToolTip(tip)
    return spin


class TrainingPanel(QGroupBox):
    """"Refine dataset (MaskCLIP+)": settings, Start / Cancel / Resume / Refine, progress, loss curve."""

    save_requested = Signal()  # write the annotator's pending edits now (the child reads the project next)
    labels_changed = Signal()  # refine wrote labels into the shown project
    said = Signal(str, bool)  # what the section says (text, error): also the annotator's message line

    def __init__(self, model_choice: Callable, parent=None):
        super().__init__("Refine dataset (MaskCLIP+)", parent)
        self._model_choice = model_choice  # () -> the annotator's ModelChoice
        self.project = None  # the project the annotator shows
        self.run_dir: Path | None = None
        self.stage = ""  # "train" / "refine" while a child runs
        self.refine_summary: dict | None = None
        self._child: ChildProcess | None = None
        self._project_root: Path | None = None  # the project the running child works on
        self.started_at = 0.0  # time.time() when the running (or last) child started
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
        intro = QLabel(say.TRAINING_INTRO)
        intro.setWordWrap(True)
        v.addWidget(intro)
        form = QFormLayout()
        self.iters_spin = _auto_spin(1_000_000, 100, "iters", tip=say.TIPS["iters"])
        self.student_combo = NarrowCombo()
        for name, text in student_choices():
            self.student_combo.addItem(text, name)
        self.student_combo.setCurrentIndex(self.student_combo.findData(AUTO_STUDENT))
        self.student_combo.setToolTip(say.TIPS["student"])
        self.device_combo = NarrowCombo()
        self.set_devices(usable_devices())
        form.addRow("Iterations", self.iters_spin)
        form.addRow("Network", self.student_combo)
        form.addRow("Device", self.device_combo)
        v.addLayout(form)

        advanced = QCollapsible("Advanced")
        inner = QWidget()
        aform = QFormLayout(inner)
        aform.setContentsMargins(0, 0, 0, 0)
        self.batch_spin = _auto_spin(512, 1, "batch_size")
        self.crop_spin = _spin(32, 2048, 512, 32, " px", say.TIPS["crop"])
        self.base_spin = _spin(32, 4096, 512, 32, " px", say.TIPS["base"])
        self.imagenet_check = QCheckBox("ImageNet backbone weights")
        self.imagenet_check.setChecked(True)
        self.imagenet_check.setToolTip(say.TIPS["imagenet"])
        aform.addRow("Batch size", self.batch_spin)
        aform.addRow("Crop size", self.crop_spin)
        aform.addRow("Short side", self.base_spin)
        aform.addRow(self.imagenet_check)
        self.self_training_combo = NarrowCombo()
        for key, _, text in SELF_TRAINING:
            self.self_training_combo.addItem(text, key)
        self.self_training_combo.setToolTip(say.TIPS["self_training"])
        aform.addRow("Self-training", self.self_training_combo)
        advanced.addWidget(inner)
        v.addWidget(advanced)

        row = QGridLayout()  # two columns: the dock stays narrow
        self.start_button = QPushButton("Start")
        self.cancel_button = QPushButton("Cancel")
        self.resume_button = QPushButton("Resume")
        self.refine_button = QPushButton("Refine")
        for i, (button, tip, slot) in enumerate(((self.start_button, "train_start", self.start),
                                                 (self.cancel_button, "train_cancel", self.cancel),
                                                 (self.resume_button, "train_resume", self.resume),
                                                 (self.refine_button, "train_refine", self.refine))):
            button.setToolTip(say.TIPS[tip])
            button.clicked.connect(slot)
            row.addWidget(button, i // 2, i % 2)
        v.addLayout(row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("")
        v.addWidget(self.progress_bar)
        self.status_label = QLabel(say.NO_RUN)
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
        """Set the panel's fields (those given) as a user would; for scripts and tests."""
        if student is not None:
            index = self.student_combo.findData(student)
            if index < 0:
                raise ValueError(f"unknown student {student!r}; choose from {[n for n, _ in student_choices()]}")
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

    def set_devices(self, devices) -> None:
        """Offer these devices (cuda only where it is usable), keeping the choice when it is still offered."""
        current = self.device_combo.currentText()
        if [self.device_combo.itemText(i) for i in range(self.device_combo.count())] == list(devices):
            return
        self.device_combo.clear()
        self.device_combo.addItems(list(devices))
        if current in devices:
            self.device_combo.setCurrentText(current)

    def _show_message(self, text: str, error: bool = False) -> None:
        """In the section, and (said) on the annotator's message line like every other message."""
        self.message.setStyleSheet("color: #e05555;" if error else "")
        self.message.setText(text)
        if text:
            self.said.emit(text, error)

    @property
    def running(self) -> bool:
        return self._child is not None

    @property
    def process_id(self) -> int | None:
        """The running child's process id (None when none runs)."""
        return self._child.process_id if self._child is not None else None

    def _set_enabled(self) -> None:
        idle = not self.running
        progress = read_progress(self.run_dir) if self.run_dir is not None else None
        state = (progress or {}).get("state")
        resumable = self.run_dir is not None and state in (STATE_CANCELLED, STATE_FAILED, STATE_RUNNING)
        self.start_button.setEnabled(idle and self.project is not None)
        self.cancel_button.setEnabled(not idle)
        self.resume_button.setEnabled(idle and resumable)
        self.refine_button.setEnabled(idle and self.run_dir is not None and RunFolder(self.run_dir).has_student())
        for w in (self.iters_spin, self.student_combo, self.device_combo, self.batch_spin, self.crop_spin,
                  self.base_spin, self.imagenet_check, self.self_training_combo):
            w.setEnabled(idle)

    # --- project --------------------------------------------------------------------------------
    def set_project(self, project) -> None:
        """The project the annotator shows. Shows its latest run (e.g. one cancelled when napari last closed),
        unless a child of this panel is running (it keeps its own project and run)."""
        self.project = project
        if self.running:
            return
        self.set_devices(usable_devices())  # torch may be imported by now (a model was loaded)
        self.device_combo.setCurrentText(self._model_choice().device)
        self.run_dir = latest_run(project.root) if project is not None else None
        self._metrics = MetricsTail.of_run(self.run_dir) if self.run_dir is not None else None
        self.plot.set_data([], 0)
        self._show_message("")
        self.poll()
        if self.run_dir is None:
            self.status_label.setText(say.NO_RUN)
        else:
            state = (self._progress or {}).get("state")
            self.status_label.setText(say.last_run(self.run_dir.name, self.status_label.text(), state))
        self._set_enabled()

    # --- actions --------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start a new run with the panel's settings and the annotator's model. False when it cannot."""
        project = self.project
        if project is None or self.running:
            return False
        if not project.classes:
            self._show_message(say.TRAIN_NEEDS_CLASSES, error=True)
            return False
        self.save_requested.emit()
        choice = self._model_choice()
        run_dir = new_run_dir(project.root)
        args = train_arguments(project.root, run_dir, model=choice.name, pretrained=choice.weights,
                               device=self.device_combo.currentText(), iters=self.iters_spin.value() or None,
                               student=self.student_combo.currentData(), batch_size=self.batch_spin.value() or None,
                               crop_size=self.crop_spin.value(), base_size=self.base_spin.value(),
                               imagenet=self.imagenet_check.isChecked(),
                               guided_fraction=GUIDED_FRACTIONS[self.self_training_combo.currentData()])
        try:
            run_dir.mkdir(parents=True)
            write_launch(run_dir, args)
        except OSError as exc:
            self._show_message(say.cannot_create_run(run_dir, exc), error=True)
            return False
        return self._launch("train", args, project.root, run_dir)

    def resume(self) -> bool:
        return self._launch_in_run("train", resume_arguments)

    def refine(self) -> bool:
        """Relabel the shown project with its current run's student (the Refine button)."""
        return self._launch_in_run("refine", refine_arguments)

    def _launch_in_run(self, kind: str, arguments) -> bool:
        """A child working in the current run folder (resume, refine): edits saved first."""
        project = self.project
        if self.running or self.run_dir is None or project is None:
            return False
        self.save_requested.emit()
        return self._launch(kind, arguments(project.root, self.run_dir, self.device_combo.currentText()),
                            project.root, self.run_dir)

    def cancel(self) -> None:
        """SIGTERM: training ends after the current iteration with a checkpoint (state cancelled)."""
        if self._child is not None:
            self._child.terminate()
            self._show_message(say.cancelling(self.stage))
            self.cancel_button.setEnabled(False)

    # --- the child process ----------------------------------------------------------------------
    def _launch(self, stage: str, args: list[str], project_root: Path, run_dir: Path) -> bool:
        child = ChildProcess(stage, args, self, on_finished=self._on_finished,
                             on_failed_to_start=self._on_failed_to_start)
        self._child, self.stage = child, stage
        self._project_root, self.run_dir = Path(project_root), Path(run_dir)
        self.started_at = time.time()
        if stage == "train":
            self._metrics = MetricsTail.of_run(self.run_dir)  # a resumed run's curve is read again
            self.plot.set_data([], 0)
            self.refine_summary = None
        self._show_message("")
        self.status_label.setText(say.TRAIN_STARTING if stage == "train" else say.REFINING)
        self.progress_bar.setRange(0, 0)  # busy until the first progress report
        self.progress_bar.setFormat(stage)
        self._watch_window()
        child.start()
        self._timer.start()
        self._set_enabled()
        return True

    def _poll_refine(self) -> None:
        """Refine's image counts, from RUN_DIR/refine_progress.json (one written before this refine started
        is not shown)."""
        progress = read_refine_progress(self.run_dir)
        if not progress or progress.get("started", 0) < self.started_at - 1.0:
            return
        total = int(progress.get("total") or 0)
        self.status_label.setText(describe_refine_progress(progress))
        if total:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(int(progress.get("done") or 0), total))
            self.progress_bar.setFormat("refine %v/%m images")

    def poll(self) -> None:
        """Show the run folder's progress and loss curve (timer; cheap: two small reads). While refine
        runs: its image counts (refine_progress.json)."""
        if self.run_dir is None:
            return
        if self.stage == "refine":  # set while a refine child runs
            self._poll_refine()
            return
        self._progress = progress = read_progress(self.run_dir)
        if self._metrics is not None and self._metrics.poll():
            self.plot.set_data(self._metrics.records, (progress or {}).get("total", 0))
        elif progress and progress.get("total") != self.plot.total:
            self.plot.set_data(self.plot.records, progress.get("total", 0))
        eta = None
        if progress and self._metrics is not None:
            eta = estimate_eta(self._metrics.records, progress.get("total", 0),
                               since=self.started_at if self.running else None)
        self.status_label.setText(describe_progress(progress, eta, running=self.running))
        if not progress:
            return
        if progress.get("phase") == PHASE_PSEUDO_LABELS and progress.get("state") == STATE_RUNNING:
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

    def _on_failed_to_start(self, child: ChildProcess, text: str) -> None:
        if child is self._child:
            self._finish(text, failed=True)

    def _on_finished(self, child: ChildProcess, code: int, crashed: bool) -> None:
        if child is not self._child:
            return
        if not child.alive:
            # the panel is being deleted with no Close or quit first: Qt's QProcess destructor killed
            # and reaped the child (the last periodic checkpoint remains); nothing is left to show it
            self._child = None
            return
        child.drain()
        if self.stage == "refine":
            self.show_refine_result(code, child.stdout, crashed)
            return
        self.poll()
        progress = self._progress or {}
        state = progress.get("state")
        if not crashed and code == 0 and state == STATE_DONE:
            if self._shutting_down:
                self._finish(say.TRAIN_DONE_NOT_REFINED)
                return
            self._end_process()
            self._show_message(say.TRAIN_DONE_REFINING)
            self._launch("refine", refine_arguments(self._project_root, self.run_dir, self.device_combo.currentText()),
                         self._project_root, self.run_dir)
        elif not crashed and (code == EXIT_CANCELLED or state == STATE_CANCELLED):
            self._finish(say.train_cancelled(progress.get("iteration", 0), progress.get("total", 0)))
        elif crashed:
            self._finish(say.train_killed(error_summary(list(child.stderr), progress)), failed=True)
        else:
            self._finish(say.train_failed(error_summary(list(child.stderr), progress, code)), failed=True)

    def show_refine_result(self, code: int, stdout: str, crashed: bool = False) -> None:
        """Show how `maskclip refine` ended: its exit code and stdout (the last JSON line is its summary)."""
        summary = None
        for line in reversed(stdout.splitlines()):
            try:
                summary = json.loads(line)
                break
            except ValueError:
                continue
        stderr = list(self._child.stderr) if self._child is not None else []
        same = self._shows_own_project()
        # exit code 1 with a summary: the batch ran and skipped images it could not read (named in "failed")
        if not crashed and code in (0, 1) and isinstance(summary, dict) and (code == 0 or summary.get("failed")):
            self.refine_summary = summary
            self._end_process()
            if same and not self._shutting_down:
                self.labels_changed.emit()
            skipped = [str(item.get("id")) for item in summary.get("failed", []) if isinstance(item, dict)]
            self._finish(say.refined(summary, skipped), failed=bool(skipped))
            return
        if same and not self._shutting_down:
            self.labels_changed.emit()  # the images refined before the failure show their new labels
        self._finish(say.refine_failed(error_summary(stderr, None, code)), failed=True)

    def _end_process(self) -> None:
        child, self._child = self._child, None
        self._timer.stop()
        if child is not None:
            child.release()

    def _shows_own_project(self) -> bool:
        """Whether the annotator still shows the project the child works on."""
        project = self.project
        return project is not None and self._project_root is not None and \
            Path(project.root).resolve() == self._project_root.resolve()

    def _finish(self, text: str, failed: bool = False) -> None:
        self._end_process()
        self.stage = ""
        if self.project is not None and not self._shows_own_project():
            text = say.other_project(self._project_root, text)
            self.set_project(self.project)
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
        child = self._child
        if child is None:
            return
        self._shutting_down = True
        try:
            self._timer.stop()
            child.stop(SHUTDOWN_WAIT_S)
            if self._child is child:  # `finished` was not delivered
                self._finish(say.STOPPED_ON_CLOSE)
        finally:
            self._shutting_down = False
