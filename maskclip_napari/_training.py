"""The annotator's "Refine dataset (MaskCLIP+)" section under its earlier module name.

It is made of: `panels.training` (the panel, `TrainingSection` here), `_child_process` (the child process),
`_run_commands` (command lines, status lines, error summaries; no Qt), `_loss_plot` (the loss curve), and the
core's `maskclip.run_folder` (the run folder's layout, progress files and readers), re-exported here.
"""
from __future__ import annotations

from maskclip.run_folder import (  # noqa: F401
    LAUNCH_FILE,
    METRICS_FILE,
    PROGRESS_FILE,
    REFINE_PROGRESS_FILE,
    RUNS_FOLDER,
    STUDENT_FILE,
    MetricsTail,
    latest_run,
    new_run_dir,
    read_progress,
    read_refine_progress,
)

from ._child_process import EXIT_CANCELLED  # noqa: F401
from ._loss_plot import PHASE_COLOURS, LossPlot, curve_points, loss_range  # noqa: F401
from ._run_commands import (  # noqa: F401
    ERROR_LINES,
    describe_progress,
    describe_refine_progress,
    error_summary,
    estimate_eta,
    format_duration,
    refine_arguments,
    resume_arguments,
    split_output_lines,
    train_arguments,
)
from .panels.training import (AUTO_STUDENT, GUIDED_FRACTIONS, POLL_MS, SELF_TRAINING,  # noqa: F401
                              SHUTDOWN_WAIT_S, student_choices)
from .panels.training import TrainingPanel as TrainingSection  # noqa: F401
