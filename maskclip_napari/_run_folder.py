"""The training run folder as the annotator reads it, and the `maskclip train` / `maskclip refine` command
lines it starts (no Qt: tested without a display).

The trainer writes RUN_DIR/progress.json (replaced atomically) and RUN_DIR/metrics.jsonl; the annotator
keeps the command line it started a run with in RUN_DIR/annotator.json so Resume reuses it.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Sequence

# The run folder's file names, in one place on the GUI side.
# TODO(merge): from maskclip.train.run_folder (the Qt-free run-folder layout module made on another branch)
RUNS_FOLDER = "runs"  # PROJECT/runs/<YYYYmmdd-HHMMSS>
PROGRESS_FILE = "progress.json"
METRICS_FILE = "metrics.jsonl"
STUDENT_FILE = "student.pt"
LAST_CHECKPOINT = "checkpoints/last.pt"
LAUNCH_FILE = "annotator.json"  # the command line the annotator started a run with (Resume reuses it)

ERROR_LINES = 6  # the most stderr lines an error summary keeps


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
        marker = run / PROGRESS_FILE
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
        data = json.loads((Path(run_dir) / PROGRESS_FILE).read_text(encoding="utf-8"))
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
