"""What the annotator adds to a MaskCLIP+ run folder (no Qt: tested without a display): the `maskclip train`
/ `maskclip refine` command lines it starts, the status lines it shows, and error summaries of a child's stderr.

The run folder itself (file names, layout, progress.json / refine_progress.json / metrics.jsonl, the recorded
launch command, `latest_run`, `MetricsTail`) is `maskclip.run_folder`, the one module training, refine and
the annotator share. Progress is read only from those files, never from a child's output.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from maskclip.defaults import DEVICE_CHOICES
from maskclip.run_folder import PHASE_PSEUDO_LABELS, STATE_RUNNING, read_launch

from ._torch_env import loaded_torch

ERROR_LINES = 6  # the most stderr lines an error summary keeps


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
    state, phase = progress.get("state", STATE_RUNNING), progress.get("phase")
    if state == STATE_RUNNING and phase == PHASE_PSEUDO_LABELS:
        done, total = progress.get("teacher_done"), progress.get("teacher_total")
        return f"teacher pseudo labels {done}/{total}" if total else "loading the CLIP model…"
    parts = [f"iteration {progress.get('iteration', 0)}/{progress.get('total', 0)}"]
    if phase:
        parts.append(str(phase))
    loss = progress.get("loss")
    if isinstance(loss, (int, float)):
        parts.append(f"loss {loss:.3f}")
    if state == STATE_RUNNING:
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
    else:
        parts.append(state)
    return " · ".join(parts)


def train_arguments(project_root, run_dir, *, model: str, pretrained: str | None, device: str, iters: int | None,
                    student: str, batch_size: int | None, crop_size: int, base_size: int,
                    imagenet: bool, guided_fraction: float | None = None) -> list[str]:
    """`maskclip train` arguments (after `-m maskclip`) for a new run. pretrained None = random weights;
    iters / batch_size None: the command line's default for the student (no flag)."""
    args = ["train", str(Path(project_root).resolve()), "--run", str(Path(run_dir).resolve()),
            "--model", model, "--pretrained", "none" if pretrained is None else str(pretrained),
            "--device", device, "--student", student, "--crop-size", str(crop_size), "--base-size", str(base_size)]
    if iters is not None:
        args += ["--iters", str(iters)]
    if batch_size is not None:
        args += ["--batch-size", str(batch_size)]
    if not imagenet:
        args.append("--no-imagenet")
    if guided_fraction is not None:
        args += ["--guided-fraction", str(guided_fraction)]
    return args


def resume_arguments(project_root, run_dir, device: str) -> list[str]:
    """`maskclip train ... --resume` for a run: its recorded command line when the annotator started it,
    otherwise (a run from the command line) the run's saved configuration on `device`."""
    saved = (read_launch(run_dir) or {}).get("train")
    if isinstance(saved, list) and saved[:1] == ["train"]:
        return [*saved, "--resume"]
    return ["train", str(Path(project_root).resolve()), "--run", str(Path(run_dir).resolve()), "--device", device,
            "--resume"]


def refine_arguments(project_root, run_dir, device: str) -> list[str]:
    return ["refine", str(Path(project_root).resolve()), "--run", str(Path(run_dir).resolve()), "--device", device]


def split_output_lines(text: str) -> list[str]:
    """Lines of a child's stderr; tqdm's carriage-return redraws count as lines too."""
    return [ln.rstrip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]


_PROGRESS_BAR = re.compile(r"\d+%\||\d+/\d+ \[")  # a tqdm bar line (`maskclip refine` draws one for people)


def describe_refine_progress(progress: dict | None) -> str:
    """One status line from refine_progress.json."""
    if not progress or not progress.get("total"):
        return "refining…"
    text = f"refine {progress.get('done', 0)}/{progress['total']} images"
    return text + (f" · {progress['failed']} skipped" if progress.get("failed") else "")


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
        if _PROGRESS_BAR.search(line):
            continue
        kept.append(line)
    kept = kept[-ERROR_LINES:]
    if not kept and progress and progress.get("error"):
        kept = [str(progress["error"])]
    if not kept:
        kept = [f"the process ended with exit code {exit_code}" if exit_code is not None else "the process failed"]
    return "\n".join(kept)


def usable_devices() -> tuple[str, ...]:
    """The DEVICE_CHOICES this machine can train on: "cuda" only with a usable CUDA GPU. torch is asked only
    once something else imported it (importing it costs 5-10 s); until then every choice is offered."""
    torch = loaded_torch()
    if torch is None:
        return tuple(DEVICE_CHOICES)
    try:
        cuda = bool(torch.cuda.is_available())
    except Exception:  # a broken CUDA install: not usable
        cuda = False
    return tuple(d for d in DEVICE_CHOICES if d != "cuda" or cuda)
