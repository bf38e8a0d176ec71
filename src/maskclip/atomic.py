"""Atomic file writes: a reader never sees a half-written output file.

`atomic_write(path)` writes to a temporary file in the destination's folder (same file system, so the
final `os.replace` is atomic), flushes and fsyncs it, then renames it over the destination. If the body
raises, the temporary file is removed and any existing destination is left untouched. Permission,
read-only and full-disk failures become a `FileWriteError` that names the destination path.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import IO, Iterator

from .errors import MaskCLIPError

# OSError numbers a user can act on (fix permissions, free space, pick another folder).
_ACTIONABLE_ERRNOS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on device",
    errno.EROFS: "read-only file system",
    errno.EDQUOT: "disk quota exceeded",
    errno.EISDIR: "the destination is a folder",
    errno.EFBIG: "file too large (a file-size limit was reached)",
}


_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")  # what atomic_write names its temporary files


class FileWriteError(MaskCLIPError):
    """An output file could not be written (permissions, full disk, read-only or missing folder)."""


def _write_error(path: Path, exc: OSError) -> FileWriteError:
    reason = _ACTIONABLE_ERRNOS.get(exc.errno) or exc.strerror or str(exc)
    return FileWriteError(f"cannot write {path}: {reason}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str = "utf-8") -> Iterator[IO]:
    """Yield a file object for `path` that replaces the destination only when the block succeeds.

    `mode` is "wb" (binary) or "w" (text, `encoding`). A new file gets the usual permissions (umask
    applied); an existing destination keeps its permission bits.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', not {mode!r}")
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileWriteError(f"cannot write {path}: folder {folder} does not exist")
    tmp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"  # matches _TEMP_NAME
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        f = os.fdopen(fd, "wb") if mode == "wb" else os.fdopen(fd, "w", encoding=encoding, newline="")
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with f:
            try:
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
            except FileNotFoundError:
                pass
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        # OSErrors about some other file (they carry its name) pass through unchanged.
        if (
            isinstance(exc, OSError)
            and exc.errno in _ACTIONABLE_ERRNOS
            and exc.filename in (None, str(tmp), str(path), tmp, path)
        ):
            raise _write_error(path, exc) from exc
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    """Persist the rename itself (POSIX); best effort, not available on every platform."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_temp_file(name: str) -> bool:
    """True for the name of an atomic_write temporary file (what a killed write leaves behind)."""
    return _TEMP_NAME.fullmatch(name) is not None


def remove_temp_files(folder: str | os.PathLike, min_age_s: float = 0.0) -> list[Path]:
    """Delete atomic_write leftovers in `folder` (not below it) at least `min_age_s` old; returns them.

    Only names atomic_write makes are touched. A temporary file younger than min_age_s may belong to a
    write still in progress in another process; pass 0 only when no other process writes there.
    """
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not is_temp_file(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime >= min_age_s:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def serialiser_write_error(path: str | os.PathLike, exc: BaseException) -> FileWriteError | None:
    """A serialiser's failed write as a FileWriteError naming `path`, or None for other errors.

    torch.save reports a full disk or a file-size limit as an OSError (ENOSPC, EFBIG) or as a RuntimeError
    from its archive writer ("... file write failed"), with a long C++ text."""
    if isinstance(exc, FileWriteError):
        return exc
    if isinstance(exc, OSError):
        return _write_error(Path(path), exc)
    if isinstance(exc, RuntimeError) and "write" in str(exc).lower():
        return FileWriteError(f"cannot write {path}: the write failed (is the disk full, or a file-size limit "
                              "reached?)")
    return None


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """`torch.save(obj)` to `path` atomically; a failed write is a FileWriteError (no temporary file stays)."""
    import torch

    try:
        with atomic_write(path, "wb") as f:
            torch.save(obj, f)
    except (OSError, RuntimeError) as exc:
        error = serialiser_write_error(path, exc)
        if error is None or error is exc:
            raise
        raise error from exc
