"""The store's file I/O: JSON and PNG reads and writes, content hashes, file signatures, inter-process locks,
and cleaning up after a create that did not finish.

Every write goes through `maskclip.atomic.atomic_write` (temporary file, fsync, rename), so a killed
process leaves the old or the new file, never a mix. The other modules of the store call these as
`files.<name>` (one place where disk access is seen, and the one a test patches to forbid or fail it).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout
from PIL import Image

from ..atomic import FileWriteError, atomic_write, remove_temp_files
from ..images import list_images, read_image  # noqa: F401  (the store reads images through this module)
from ..labels_io import read_label_image, write_index_png  # noqa: F401
from .records import ProjectBusyError, ProjectError
from .schema import CREATED_ENTRIES, IMAGE_LOCK, PROJECT_LOCK

LOCK_TIMEOUT_S = 60.0  # how long a save waits for another process's save of the same file to finish
TEMP_AGE_S = 60.0  # a temporary file of an atomic write this old in the project folder is a killed save's


def read_json(path: Path, what: str) -> dict:
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ProjectError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProjectError(f"{path}: cannot read {what} ({exc})") from exc
    if not isinstance(data, dict):
        raise ProjectError(f"{path}: {what} is not a JSON object")
    return data


def write_json(path: Path, data: dict) -> None:
    with atomic_write(path, "w") as f:
        json.dump(data, f, separators=(",", ":"))


def mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileWriteError(f"cannot create folder {path}: {exc.strerror or exc}") from exc


def open_regular(path: Path):
    """Open a regular file for reading (binary), never following a symbolic link in its last part and never
    blocking on a FIFO: a FIFO, socket, device (/dev/zero) or link is an OSError naming the path (hashing
    one would never end)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    if not hasattr(os, "O_NOFOLLOW") and os.path.islink(path):
        raise OSError(f"{path}: is a symbolic link, not a regular file")
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, "is a symbolic link, not a regular file", str(path)) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file (a FIFO, socket or device)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def sha256_file(path: Path) -> str:
    """sha256 of a regular file's content (`open_regular`: anything else is an OSError)."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def copy_hashed(src: Path, dest: Path) -> str:
    """Copy a regular file atomically and return the sha256 of what was copied (one read of the source)."""
    h = hashlib.sha256()
    with open_regular(src) as fin, atomic_write(dest, "wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            h.update(chunk)
            fout.write(chunk)
    return h.hexdigest()


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    """1-bit PNG (about 1/8 of a byte per pixel before compression)."""
    im = Image.fromarray(np.ascontiguousarray(mask, dtype=bool))
    with atomic_write(path, "wb") as f:
        im.save(f, format="PNG")


def read_mask_png(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as im:
            mask = np.asarray(im.convert("1"), dtype=bool)
    except (OSError, ValueError) as exc:
        raise ProjectError(f"{path}: verified-pixel mask is unreadable ({exc})") from exc
    if mask.shape != shape:
        raise ProjectError(f"{path}: verified-pixel mask has shape {mask.shape}, image is {shape}")
    return mask


def png_problem(path: Path) -> str | None:
    """Why a stored label PNG cannot be complete (missing, empty, no PNG, truncated), without decoding it."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(0, size - 12))
            tail = f.read(12)
    except FileNotFoundError:
        return f"{path.name} is missing"
    except OSError as exc:
        return f"{path.name} cannot be read ({exc.strerror or exc})"
    if head != b"\x89PNG\r\n\x1a\n":
        return f"{path.name} is not a PNG file" if size else f"{path.name} is empty"
    if tail[4:8] != b"IEND":
        return f"{path.name} is truncated"
    return None


def file_sig(path: Path) -> tuple[int, int, int] | None:
    """Identity of a file's current version (atomic_write replaces the inode on every save)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


@contextlib.contextmanager
def hold(lock: FileLock, what: str):
    """Hold an inter-process file lock; failures become errors a GUI can show."""
    try:
        lock.acquire()
    except Timeout:
        raise ProjectBusyError(f"{what} is locked by another process that has been saving for over "
                               f"{LOCK_TIMEOUT_S:.0f} s; try again when it has finished") from None
    except OSError as exc:
        raise FileWriteError(f"cannot lock {lock.lock_file}: {exc.strerror or exc} (a read-only project "
                             "can be read but not changed)") from exc
    try:
        yield
    finally:
        lock.release()


SUBFOLDERS = ("annotations", "images", "cache")  # the project's own folders: never symbolic links


def check_own_folder(path: Path) -> None:
    """Refuse a project folder that is a symbolic link: writes would land outside the project, and files
    there named like the project's would be deleted as its own."""
    if path.is_symlink():
        raise ProjectError(f"{path} is a symbolic link; a project's folders (annotations/, images/, cache/ and "
                           "annotations/<image id>/) must be real folders inside the project, so nothing is written "
                           "or deleted elsewhere. Replace the link with a copy of the folder it points to")


def check_subfolders(root: Path) -> None:
    for name in SUBFOLDERS:
        check_own_folder(root / name)


class ProjectLocks:
    """A project's inter-process locks, one FileLock per file (re-entrant within one Project: calls nest)."""

    def __init__(self, root: Path):
        self.root = root
        self._locks: dict[Path, FileLock] = {}

    def _file(self, path: Path, what: str):
        lock = self._locks.get(path)
        if lock is None:
            lock = self._locks[path] = FileLock(path, timeout=LOCK_TIMEOUT_S, thread_local=False)
        return hold(lock, what)

    def project(self):
        """For project.json and images.json updates (read-modify-write)."""
        return self._file(self.root / PROJECT_LOCK, f"project {self.root}")

    def image(self, image_id: str, folder: Path):
        """For one image's revisions (`folder` is its annotations folder): every commit reads the latest
        state under it."""
        check_own_folder(folder.parent)
        check_own_folder(folder)
        mkdir(folder)
        return self._file(folder / IMAGE_LOCK, f"image {image_id!r} of project {self.root}")


def remove_unfinished(root: Path) -> None:
    """Delete what a failed Project.create made in `root` (only the project's own entries)."""
    for name in CREATED_ENTRIES:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    remove_temp_files(root)
