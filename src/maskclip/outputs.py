"""Is an output folder safe to write? Commands never write their outputs over the user's own files.

`check_output_folder` refuses an output folder that is one of the command's inputs, lies inside or holds
one, or lies inside an annotation project (a project's files are written by the project only);
`existing_outputs` lists the files of the names a command would write that already exist, so it can refuse
to replace them unless told to. `check_run_folder` accepts a run folder (`maskclip train --run`) that is
missing, empty or a training run's folder, never another folder whose files train would overwrite.

No torch here: the CLI checks its outputs before any model is loaded.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from .errors import MaskCLIPError

PROJECT_FILE = "project.json"  # maskclip.project's names, repeated so this module stays light
PROJECT_FORMAT = "maskclip-project"
INIT_MARKER = ".maskclip-init"
# what a training run's folder holds (maskclip.train.loop.RunFolder, and the annotator's launch record)
RUN_ENTRIES = frozenset({"config.json", "progress.json", "metrics.jsonl", "checkpoints", "student.pt", "teacher",
                         "annotator.json"})


class UnsafeOutputError(MaskCLIPError):
    """An output would land on the command's inputs, inside a project, or over files it did not write."""


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.realpath(os.fspath(path))))


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def is_project_folder(folder: Path) -> bool:
    """True for an annotation project's folder (its project.json, or a project being created)."""
    if (folder / INIT_MARKER).exists():
        return True
    meta = folder / PROJECT_FILE
    if not meta.is_file():
        return False
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == PROJECT_FORMAT


def project_containing(path: str | os.PathLike) -> Path | None:
    """The annotation project folder `path` is (or lies inside), or None."""
    p = _resolved(path)
    for folder in (p, *p.parents):
        try:
            if is_project_folder(folder):
                return folder
        except OSError:
            continue
    return None


def check_output_folder(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), *,
                        option: str = "--out") -> None:
    """Refuse `out` when it is an input folder, lies inside an input folder, holds an input, or lies inside
    an annotation project. Raises UnsafeOutputError naming both paths."""
    target = _resolved(out)
    project = project_containing(target)
    if project is not None:
        raise UnsafeOutputError(f"{option} {out} lies inside the annotation project {project}; a project's files "
                                "are written by the project only, choose an output folder outside it")
    for given in inputs:
        source = _resolved(given)
        if target == source:
            raise UnsafeOutputError(f"{option} {out} is the input {given}; choose a separate output folder")
        if _is_within(target, source) and source.is_dir():
            raise UnsafeOutputError(f"{option} {out} lies inside the input folder {given}; choose an output folder "
                                    "outside the inputs")
        if _is_within(source, target):
            raise UnsafeOutputError(f"{option} {out} holds the input {given}; choose an output folder that holds "
                                    "none of the inputs")


def existing_outputs(out: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """The files among OUT/<name> that already exist (what writing them would replace)."""
    out = Path(out)
    return [out / n for n in names if os.path.lexists(out / n)]


def _json_object(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_run_folder(folder: str | os.PathLike) -> bool:
    """True for a training run's folder: its config.json as train writes it ({"train": {...}, ...}), or a run
    stopped before writing it (only run files, and a progress.json as train writes it)."""
    folder = Path(folder)
    config = _json_object(folder / "config.json") if (folder / "config.json").is_file() else None
    if config is not None and isinstance(config.get("train"), dict):
        return True
    if (folder / "config.json").exists():
        return False  # someone else's config.json: train would overwrite it
    from .atomic import is_temp_file

    entries = [e for e in os.listdir(folder) if not is_temp_file(e)]
    if not set(entries) <= RUN_ENTRIES:
        return False
    if "progress.json" in entries:
        progress = _json_object(folder / "progress.json")
        return progress is not None and "state" in progress
    return True  # only what the annotator or a just-started run puts there


def check_run_folder(run: str | os.PathLike, option: str = "--run") -> None:
    """A run folder must be missing, empty or a training run's folder (train writes config.json,
    progress.json, metrics.jsonl and checkpoints there); anything else is refused."""
    path = Path(run)
    if os.path.lexists(path) and not path.is_dir():
        raise UnsafeOutputError(f"{option} {run} exists and is not a folder; give a new folder or a run folder")
    if path.is_dir():
        try:
            empty = not any(os.scandir(path))
        except OSError as exc:
            raise UnsafeOutputError(f"{option} {run}: cannot read the folder ({exc.strerror or exc})") from None
        if not empty and not is_run_folder(path):
            raise UnsafeOutputError(
                f"{option} {run} is a folder that is not a training run (no config.json written by maskclip "
                "train); train would overwrite its files: give a new or empty folder, or an earlier run's folder")
