"""The annotator's "Refine dataset (MaskCLIP+)" section under its earlier module name.

It is made of: `panels.training` (the panel, `TrainingSection` here), `_child_process` (the child process),
`_run_folder` (reading the run folder and the command lines, no Qt) and `_loss_plot` (the loss curve).
"""
from __future__ import annotations

from ._child_process import EXIT_CANCELLED  # noqa: F401
from ._loss_plot import PHASE_COLOURS, LossPlot, curve_points, loss_range  # noqa: F401
from ._run_folder import (  # noqa: F401
    ERROR_LINES,
    LAUNCH_FILE,
    METRICS_FILE,
    PROGRESS_FILE,
    RUNS_FOLDER,
    STUDENT_FILE,
    MetricsTail,
    describe_progress,
    error_summary,
    estimate_eta,
    format_duration,
    latest_run,
    new_run_dir,
    read_progress,
    refine_arguments,
    resume_arguments,
    split_output_lines,
    tqdm_counts,
    train_arguments,
)
from .panels.training import GUIDED_FRACTIONS, POLL_MS, SELF_TRAINING, SHUTDOWN_WAIT_S, STUDENTS  # noqa: F401
from .panels.training import TrainingPanel as TrainingSection  # noqa: F401
