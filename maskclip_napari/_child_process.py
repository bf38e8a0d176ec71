"""One child process for `maskclip train` and `maskclip refine`: `python -m maskclip ARGS` in a QProcess, so
the viewer never waits for it and a crash of the child cannot take napari down.

Progress: the child reports only through its run folder (`maskclip train`: RUN_DIR/progress.json and
metrics.jsonl; `maskclip refine`: RUN_DIR/refine_progress.json; all defined in `maskclip.run_folder`), which
the training panel polls; nothing here reads progress from the child's output.

The child's stderr is kept (its last lines make the error summary) and its stdout collected (refine prints
a JSON summary as its last line). Stopping (`stop`) is SIGTERM (training checkpoints and ends `cancelled`),
a wait, then SIGKILL; the child is always waited for, so no zombie or orphan keeps the CPU or GPU busy.
"""
from __future__ import annotations

import sys
from collections import deque
from typing import Callable

from qtpy.QtCore import QProcess, QProcessEnvironment

from ._run_commands import split_output_lines

EXIT_CANCELLED = 130  # `maskclip train` cancelled (SIGTERM/SIGINT) after writing a checkpoint
STDERR_LINES = 200


def alive(obj) -> bool:
    """Whether a Qt object's C++ side still exists (any binding: using a deleted one raises)."""
    try:
        obj.objectName()
    except RuntimeError:
        return False
    return True


class ChildProcess:
    """`python -m maskclip <stage> ...` (stage: "train" or "refine"), reporting to callbacks on the GUI thread.

    on_finished(child, exit_code, crashed) once it ends; on_failed_to_start(child, message) when it could not
    start.
    """

    def __init__(self, stage: str, args: list[str], parent, *, on_finished: Callable, on_failed_to_start: Callable):
        self.stage = stage
        self.args = list(args)
        self.stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self.stdout = ""
        self._partial = ""
        self._released = False
        proc = QProcess(parent)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        proc.setProcessEnvironment(env)
        proc.setProgram(sys.executable)
        proc.setArguments(["-m", "maskclip", *self.args])
        proc.readyReadStandardError.connect(self._read_stderr)
        proc.readyReadStandardOutput.connect(self._read_stdout)
        proc.finished.connect(lambda code, status: on_finished(self, code, status == QProcess.ExitStatus.CrashExit))
        proc.errorOccurred.connect(lambda err: err == QProcess.ProcessError.FailedToStart and on_failed_to_start(
            self, f"Could not start {sys.executable} -m maskclip: {proc.errorString()}"))
        self.proc = proc

    def start(self) -> None:
        self.proc.start()

    @property
    def alive(self) -> bool:
        """False once Qt deleted the process object (its owner went away without a Close or quit first:
        QProcess's destructor killed and reaped the child)."""
        return alive(self.proc)

    @property
    def process_id(self) -> int:
        return int(self.proc.processId())

    def terminate(self) -> None:
        """SIGTERM: training ends after the current iteration with a checkpoint (state cancelled)."""
        self.proc.terminate()

    def stop(self, wait_s: float) -> None:
        """SIGTERM, up to wait_s seconds for the child to end, then SIGKILL; returns once it is reaped."""
        self.proc.terminate()
        if not self.proc.waitForFinished(int(wait_s * 1000)):
            self.proc.kill()
            self.proc.waitForFinished(5000)

    def drain(self) -> None:
        """Read what is left of stderr (an unfinished last line too) and stdout: call once it ended."""
        self._read_stderr()
        if self._partial.strip():
            self.stderr.append(self._partial.strip())
            self._partial = ""
        self._read_stdout()

    def release(self) -> None:
        """Done with it: output arriving later is ignored, the QProcess object is deleted."""
        self._released = True
        self.proc.deleteLater()

    def _read_stderr(self) -> None:
        if self._released:
            return
        text = self._partial + bytes(self.proc.readAllStandardError()).decode("utf-8", "replace")
        # keep an unfinished line for the next read (tqdm ends its redraws with \r, so those count)
        cut = max(text.rfind("\n"), text.rfind("\r"))
        self._partial = text[cut + 1:]
        lines = split_output_lines(text[:cut + 1])
        self.stderr.extend(lines)

    def _read_stdout(self) -> None:
        if not self._released:
            self.stdout += bytes(self.proc.readAllStandardOutput()).decode("utf-8", "replace")
