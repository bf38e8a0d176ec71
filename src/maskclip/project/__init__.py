"""Annotation project store: images, classes, current labels and verified pixels in one folder.

Public API (the napari annotator and the MaskCLIP+ trainer code against these names)::

    from maskclip.project import Project, ImageState, ProjectError, StaleImageError, ProjectBusyError

    p = Project.create(dir, images=src_dir, classes=["road", ["car", "vehicle"]], copy=True)
    p = Project.open(dir)                  # lazy: reads two JSON files, touches no image or label
    p.image_ids                            # list[str], stable ids (safe file names, unique)
    p.list_images() -> list[ImageState]    # id, path, size, status, labelled/verified fraction, stale
    p.image_state(image_id) / p.status() / p.class_pixel_counts(verified_only=False) -> {name: pixels}
    p.broken_images() -> [{"id", "problem"}]   # damaged state or label files (status()["broken"])
    p.get_image(image_id) -> np.ndarray    # as stored (maskclip.images.read_image)
    p.get_labels(image_id) -> np.uint8 HxW # current project class indices, 255 = unlabelled
    p.get_verified(image_id) -> bool HxW   # pixels a person set or confirmed
    p.get_labels_and_verified(image_id)    # both from one revision
    p.set_labels(image_id, labels, verified=None, mark_changed_verified=False, source="manual", base=None)
    p.set_verified(image_id, mask)
    p.merge_prediction(image_id, labels, confidence=None, class_names=None, min_confidence=0.0)
    p.import_labels(path, verified=False)  # label folder / VOC / COCO / index export (maskclip.export)
    p.history(image_id) / p.get_revision(image_id, rev) / p.restore_revision(image_id, rev) / p.clear_labels
    p.classes / p.class_names / p.class_colours / p.prompts (for model.segment); add_class /
    remove_class / rename_class / reorder_classes / set_classes / set_class_synonyms / set_class_colour
    p.background / p.set_background(list); p.settings / p.update_settings({"method": {...}})
    p.cache_dir                            # pass to maskclip.load(cache_dir=...)
    p.is_stale(image_id) / p.accept_image_change(image_id, keep_labels=False)
    p.flush()                              # writes the summary cache (labels are saved by every call)

Every mutating call is saved before it returns (autosave). One Project may be shared by threads (calls
are serialised), and several processes may write one project at once (the annotator beside `project
segment`, `refine` or cluster workers): inter-process file locks (filelock) make every save a
read-modify-write of the latest version. An image's commit merges into its latest revision under the
image's lock: predictions keep every verified pixel committed by anyone, and an editor's save
(set_labels / set_verified) takes only the pixels it changed relative to the copy the caller holds (what it
last read or submitted, or the `base` it passes), so a newer revision from another writer is merged, never
reverted, however many times the editor saves from its own copy. project.json and
images.json changes (classes, settings, added images) re-read the file under the project lock first, so
two processes adding classes get distinct uids and keep both. A save that waits more than
LOCK_TIMEOUT_S for another process raises ProjectBusyError (a ProjectError, for the GUI to show).

On-disk layout (format version 1)::

    DIR/project.json                  classes (uid, name, synonyms, colour), background prompts, settings
    DIR/images.json                   image records: id, file, sha256, size, mtime_ns, height, width;
                                      plus the files skipped at import and why
    DIR/images/<id><ext>              copies (copy mode; reference mode records absolute paths)
    DIR/annotations/<id>/state.json   the commit point: current revision, history, per-class counts
    DIR/annotations/<id>/r<rev>-<token>.labels.png    index PNG (values index `class_uids` of its rev)
    DIR/annotations/<id>/r<rev>-<token>.verified.png  1-bit PNG, only when some pixel is verified
    DIR/summary.json                  cache of the state.json files minus history (checked by stat)
    DIR/cache/                        MaskCLIP dense-feature cache (maskclip.load(cache_dir=...))
    DIR/.project.lock, DIR/annotations/<id>/.lock   inter-process lock files (empty)

Why this shape:
- Every file is written with `maskclip.atomic.atomic_write` (temporary file, fsync, rename). One
  image's labels, verified mask and counts are committed together: the new revision's PNGs are written
  first under fresh names, then `state.json` is replaced. A process killed at any moment leaves either
  the previous or the new revision, never a mix. Older revisions stay as history (refine / re-segment
  can be undone).
- Per-image state files (no single growing index) make each save O(1) and let several workers of a
  cluster job write different images of one project at the same time.
- Classes carry a permanent `uid`; a label file records the uids its indices refer to. Renaming keeps
  the uid, reordering changes only the current order, so stored labels are remapped on read and never
  shift silently. A removed class's pixels read as 255 (unlabelled) and lose their verified flag;
  re-adding a class of the same name gives a new uid, so those pixels stay unlabelled.
- Labels belong to the image content they were made on (sha256). When an image file changes on disk
  the image is reported stale and its labels are not applied (get_labels raises StaleImageError) until
  `accept_image_change` decides what to do.
- A verified unlabelled (255) pixel is confirmed background: a person said none of the classes is there
  (an erased stroke, Reviewed ✓ on an image); predictions and refinement leave it unlabelled.
- Files are data from outside: project.json, images.json and state.json are schema-checked when read
  (an error names the file); image ids must be plain file names and revision files must have the
  project's own names, so nothing read from them can lead a write or a delete out of the project.
  Only files with the project's own names are ever deleted. A create that fails part-way removes what it
  made (a killed one is cleaned by the next create); open removes old temporary files of killed saves.
"""
from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from filelock import FileLock, Timeout
from PIL import Image

from .atomic import FileWriteError, atomic_write, remove_temp_files
from .errors import ImageReadError, MaskCLIPError
from .images import list_images, read_image
from .labels_io import read_label_image, voc_palette, write_index_png
from .validation import check_probability

FORMAT = "maskclip-project"
FORMAT_VERSION = 1
PROJECT_FILE = "project.json"
IMAGES_FILE = "images.json"
SUMMARY_FILE = "summary.json"
UNLABELLED = 255
MAX_CLASSES = 255  # indices 0..254; 255 means unlabelled
DEFAULT_HISTORY = 20  # revisions kept per image besides the current one
ORPHAN_AGE_S = 600.0  # unreferenced revision files older than this are leftovers of a killed save
TEMP_AGE_S = 60.0  # a temporary file of an atomic write this old in the project folder is a killed save's
HELD_IMAGES = 8  # images whose caller-held copy an instance remembers as the merge base of the next save
LOCK_TIMEOUT_S = 60.0  # how long a save waits for another process's save of the same file to finish
PROJECT_LOCK = ".project.lock"  # held while project.json / images.json are read-modified-written
IMAGE_LOCK = ".lock"  # annotations/<id>/.lock: held while one image's revision is read-merged-committed
INIT_MARKER = ".maskclip-init"  # present while Project.create builds the folder (removed when done)
_CREATED_ENTRIES = (IMAGES_FILE, SUMMARY_FILE, "annotations", "cache", "images", PROJECT_LOCK, INIT_MARKER)
_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,239}")  # image ids: one safe file name, no leading dot
_REVISION_FILE = re.compile(r"r\d{6,}-[0-9a-f]{8}\.(labels|verified)\.png")

DEFAULT_SETTINGS = {
    "model": {"name": "ViT-B-16", "pretrained": "openai", "dense_mode": "maskclip"},
    "method": {"key_smoothing": True, "prompt_denoising": True, "pd_threshold": 0.5, "scales": [336]},
}


class ProjectError(MaskCLIPError):
    """The project folder or a request on it is invalid (message says what to do)."""


class StaleImageError(ProjectError):
    """The image file changed since its labels were made; they must not be applied to the new content."""


class ProjectBusyError(ProjectError):
    """Another process kept a file of the project locked for too long (a save could not proceed)."""


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassInfo:
    """One class. `uid` never changes (renames and reorders keep it); stored labels refer to it."""

    uid: int
    name: str
    synonyms: tuple[str, ...] = ()
    colour: tuple[int, int, int] = (0, 0, 0)

    @property
    def prompt(self) -> list[str]:
        """Name plus synonyms: one item of `MaskCLIP.segment(classes=...)`."""
        return [self.name, *self.synonyms]

    def to_json(self) -> dict:
        return {"uid": self.uid, "name": self.name, "synonyms": list(self.synonyms), "colour": list(self.colour)}


@dataclass(frozen=True)
class ImageRecord:
    """An image of the project as imported: where it is and which content its labels belong to."""

    id: str
    file: str  # relative to the project folder (copies) or absolute (references)
    source: str  # the path it was imported from
    rel: str  # path relative to the imported folder, without suffix (used to match label files)
    sha256: str
    size: int
    mtime_ns: int
    height: int
    width: int

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ImageState:
    """What the annotator's image list and `project status` show for one image."""

    id: str
    path: Path
    height: int
    width: int
    rev: int  # 0 = never labelled
    labelled_pixels: int
    verified_pixels: int
    stale: bool  # the file changed (or vanished) since import: stored labels are not applied
    verified_background_pixels: int = 0  # unlabelled pixels a person confirmed as none of the classes

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def labelled_fraction(self) -> float:
        return self.labelled_pixels / self.pixels if self.pixels else 0.0

    @property
    def verified_fraction(self) -> float:
        return self.verified_pixels / self.pixels if self.pixels else 0.0

    @property
    def status(self) -> str:
        """'stale', 'unlabelled', 'verified' (every labelled pixel verified; an all-background image
        with confirmed background) or 'labelled'."""
        if self.stale:
            return "stale"
        if self.labelled_pixels == 0:
            return "verified" if self.verified_background_pixels else "unlabelled"
        if self.verified_pixels == self.labelled_pixels:
            return "verified"
        return "labelled"


@dataclass
class ImportReport:
    """Result of adding images or importing labels: what was taken and what was skipped, and why."""

    added: list[str]
    skipped: list[tuple[str, str]]  # (path or id, reason)
    missing: list[str]  # image ids without a matching label file (label import only)
    new_classes: list[str]  # classes added to the project because the label set named them


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------
def _read_json(path: Path, what: str) -> dict:
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


def _write_json(path: Path, data: dict) -> None:
    with atomic_write(path, "w") as f:
        json.dump(data, f, separators=(",", ":"))


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileWriteError(f"cannot create folder {path}: {exc.strerror or exc}") from exc


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _base_id(rel: str) -> str:
    """A file-name-safe id from a relative path without suffix ('a/b c' -> 'a__b_c')."""
    base = "__".join(_UNSAFE.sub("_", part) for part in rel.split("/"))
    base = base.strip(".") or "image"
    return base


def _check_name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ProjectError(f"class name must be a non-empty text, got {name!r}")
    if "," in name:
        raise ProjectError(f"class name {name!r} contains a comma (commas separate synonyms)")
    return name.strip()


def _check_colour(colour) -> tuple[int, int, int]:
    vals = list(colour) if isinstance(colour, (list, tuple, np.ndarray)) else []
    if len(vals) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= int(v) <= 255 for v in vals):
        raise ProjectError(f"colour must be three integers 0..255 (r, g, b), got {colour!r}")
    return (int(vals[0]), int(vals[1]), int(vals[2]))


def _deep_merge(base: dict, update: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _write_mask_png(path: Path, mask: np.ndarray) -> None:
    """1-bit PNG (about 1/8 of a byte per pixel before compression)."""
    im = Image.fromarray(np.ascontiguousarray(mask, dtype=bool))
    with atomic_write(path, "wb") as f:
        im.save(f, format="PNG")


def _read_mask_png(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as im:
            mask = np.asarray(im.convert("1"), dtype=bool)
    except (OSError, ValueError) as exc:
        raise ProjectError(f"{path}: verified-pixel mask is unreadable ({exc})") from exc
    if mask.shape != shape:
        raise ProjectError(f"{path}: verified-pixel mask has shape {mask.shape}, image is {shape}")
    return mask


def _locked(method):
    """Serialise calls on one Project: a GUI thread and a worker thread may share it."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


def _meta_op(method):
    """A change of project.json: made under the project lock, on its latest content (another process, e.g.
    `import-labels` adding classes beside the annotator, may have changed it since this one read it)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock, self._project_lock():
            self._reload_meta_if_changed()
            return method(self, *args, **kwargs)
    return wrapper


@contextlib.contextmanager
def _hold(lock: FileLock, what: str):
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


def _file_sig(path: Path) -> tuple[int, int, int] | None:
    """Identity of a file's current version (atomic_write replaces the inode on every save)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# --------------------------------------------------------------------------------------------------
# Checking what is read from the project's files (they may be damaged or edited by hand)
# --------------------------------------------------------------------------------------------------
def _malformed(path: Path, what: str, problem: str) -> ProjectError:
    return ProjectError(f"{path}: malformed {what} ({problem}); restore it from a backup or correct it")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_image_id(image_id, path: Path) -> str:
    """Ids name files and folders (annotations/<id>/, export files): one plain name, never a path."""
    if not isinstance(image_id, str) or not _ID.fullmatch(image_id):
        raise _malformed(path, "image list", f"image id {image_id!r} is not a plain file name")
    return image_id


def _validate_meta(meta: dict, path: Path) -> dict:
    if meta.get("format") != FORMAT:
        raise ProjectError(f"{path} is not a maskclip project file")
    if not _is_int(meta.get("version")) or meta["version"] > FORMAT_VERSION:
        raise ProjectError(
            f"{path.parent} was written by a newer maskclip (project format {meta.get('version')}, this version "
            f"reads up to {FORMAT_VERSION}); upgrade maskclip-napari"
        )
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) > MAX_CLASSES:
        raise _malformed(path, "project file", f"'classes' must be a list of at most {MAX_CLASSES} classes")
    uids, names = set(), set()
    for i, c in enumerate(classes):
        ok = (isinstance(c, dict) and _is_int(c.get("uid")) and c["uid"] >= 0 and isinstance(c.get("name"), str)
              and c["name"].strip() and isinstance(c.get("synonyms", []), list)
              and all(isinstance(n, str) for n in c.get("synonyms", [])))
        if not ok:
            raise _malformed(path, "project file", f"class {i} needs a uid (integer), a name and a synonym list")
        try:
            _check_colour(c.get("colour"))
        except ProjectError as exc:
            raise _malformed(path, "project file", f"class {c['name']!r}: {exc}") from None
        if c["uid"] in uids or c["name"].casefold() in names:
            raise _malformed(path, "project file", f"class {c['name']!r} or its uid {c['uid']} appears twice")
        uids.add(c["uid"])
        names.add(c["name"].casefold())
    if not _is_int(meta.get("next_uid")) or meta["next_uid"] <= max(uids, default=-1):
        raise _malformed(path, "project file", "'next_uid' must be an integer above every class uid")
    if not isinstance(meta.get("background"), list) or not all(isinstance(b, str) for b in meta["background"]):
        raise _malformed(path, "project file", "'background' must be a list of prompts")
    if not isinstance(meta.get("settings"), dict):
        raise _malformed(path, "project file", "'settings' must be an object")
    if meta.get("images_mode") not in ("copy", "reference"):
        raise _malformed(path, "project file", "'images_mode' must be 'copy' or 'reference'")
    if not _is_int(meta.get("history", DEFAULT_HISTORY)) or meta.get("history", DEFAULT_HISTORY) < 0:
        raise _malformed(path, "project file", "'history' must be a non-negative integer")
    return meta


_RECORD_FIELDS = {"id": str, "file": str, "source": str, "rel": str, "sha256": str, "size": int, "mtime_ns": int,
                  "height": int, "width": int}


def _records_from_json(data: dict, path: Path) -> tuple[list[ImageRecord], list[dict]]:
    images, skipped = data.get("images"), data.get("skipped", [])
    if not isinstance(images, list):
        raise _malformed(path, "image list", "'images' must be a list")
    records, seen = [], set()
    plain_id = _ID.fullmatch
    for i, r in enumerate(images):  # kept lean: a 10 000-image project opens in tens of milliseconds
        try:
            rec = ImageRecord(**r)
        except TypeError:
            raise _malformed(path, "image list", f"image {i} needs the fields {', '.join(_RECORD_FIELDS)}") from None
        image_id, file = rec.id, rec.file
        if type(image_id) is not str or not plain_id(image_id):
            _check_image_id(image_id, path)  # raises, naming the id
        key = image_id.casefold()
        if key in seen:
            raise _malformed(path, "image list", f"image id {image_id!r} appears twice")
        seen.add(key)
        if type(file) is not str or not file or (".." in file and file[0] != "/"
                                                 and ".." in file.replace("\\", "/").split("/")):
            raise _malformed(path, "image list", f"image {image_id!r} names the file {file!r} outside the project")
        if type(rec.height) is not int or type(rec.width) is not int or rec.height < 1 or rec.width < 1 \
                or type(rec.sha256) is not str:
            raise _malformed(path, "image list", f"image {image_id!r} has no valid size or content hash")
        records.append(rec)
    if not isinstance(skipped, list) or not all(isinstance(s, dict) and isinstance(s.get("path"), str)
                                                and isinstance(s.get("reason"), str) for s in skipped):
        raise _malformed(path, "image list", "'skipped' must list {path, reason} objects")
    return records, skipped


def _check_entry(e, path: Path, what: str) -> None:
    ok = (isinstance(e, dict) and _is_int(e.get("rev")) and e["rev"] > 0
          and isinstance(e.get("class_uids", []), list) and all(_is_int(u) for u in e.get("class_uids", [])))
    for key, kind in (("labels", "labels"), ("verified", "verified")):
        name = e.get(key) if isinstance(e, dict) else None
        ok = ok and (name is None or (isinstance(name, str) and _REVISION_FILE.fullmatch(name) is not None
                                      and name.endswith(f".{kind}.png")))
    if not ok:
        raise ProjectError(f"{path}: malformed label state ({what}); delete that file to start the image's labels "
                           "over (its earlier revisions are lost), or restore it from a backup")


def _validate_state(state: dict, path: Path) -> dict:
    _check_entry(state, path, "current revision")
    history = state.get("history", [])
    if not isinstance(history, list):
        _check_entry(None, path, "history")
    for e in history:
        _check_entry(e, path, "history")
    for key in ("counts", "verified_counts"):
        counts = state.get(key, {})
        if not isinstance(counts, dict) or not all(_is_int(v) for v in counts.values()):
            _check_entry(None, path, key)
    return state


def _png_problem(path: Path) -> str | None:
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


def merge_edit(latest: np.ndarray, latest_v: np.ndarray, edit: np.ndarray, edit_v: np.ndarray,
               edited: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An editor's save: the pixels it edited (label or verified flag changed relative to the copy it held)
    take its labels and flags; every other pixel keeps the latest committed revision."""
    return np.where(edited, edit, latest), np.where(edited, edit_v, latest_v)


def _remove_unfinished(root: Path) -> None:
    """Delete what a failed Project.create made in `root` (only the project's own entries)."""
    for name in _CREATED_ENTRIES:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    remove_temp_files(root)


# --------------------------------------------------------------------------------------------------
# The project
# --------------------------------------------------------------------------------------------------
class Project:
    """An annotation project folder (layout and rules in the module docstring).

    Every mutating method commits to disk before it returns (autosave), so a GUI needs no save button
    and a killed process loses at most the call in flight. Construct with `Project.create` or
    `Project.open`; one instance is meant for one process (other processes may write the same project).
    """

    def __init__(self, root: Path, meta: dict, records: list[ImageRecord], skipped: list[dict]):
        self.root = root
        self._meta = meta
        self._records = records
        self._by_id = {r.id: r for r in records}
        self._skipped = skipped
        self._summary: dict | None = None  # id -> {"sig": [...], "state": {...}}, loaded on first use
        self._summary_dirty = False
        self._hash_cache: dict[tuple[str, int, int], str] = {}
        self._lock = threading.RLock()
        self._saved_meta = copy.deepcopy(meta)  # what project.json holds
        self._classes = [self._class_from_json(c) for c in meta["classes"]]
        self._reindex_classes()
        self._meta_sig = _file_sig(root / PROJECT_FILE)  # the version of project.json read or written last
        self._images_sig = _file_sig(root / IMAGES_FILE)
        # image id -> (class uids, verified) the caller holds: what it last read or submitted (merge base)
        self._held: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._forgotten: set[str] = set()  # held copies dropped to bound memory (their next save merges safely)
        self._file_locks: dict[Path, FileLock] = {}
        self._state_errors: dict[str, str] = {}  # image id -> why its state.json is unusable

    # --- creating and opening -------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, images: str | os.PathLike | Iterable[str | os.PathLike] = (),
               classes: Sequence[str | Sequence[str] | Mapping] = (), *, copy: bool = True,
               recursive: bool = False, background: Sequence[str] | None = None,
               settings: Mapping | None = None, history: int = DEFAULT_HISTORY) -> "Project":
        """Make a new project folder (empty or absent) and import `images` (files and/or folders).

        copy=True copies the images into the project; copy=False references them where they are.
        Unreadable images are skipped and listed in `skipped_images`.
        """
        from .model import DEFAULT_BACKGROUND

        root = Path(root)
        if (root / PROJECT_FILE).exists():
            raise ProjectError(f"{root} is already a project (it has {PROJECT_FILE}); open it instead")
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root} exists and is not a folder")
        made_root = not root.exists()
        if (root / INIT_MARKER).exists():
            _remove_unfinished(root)  # an earlier create failed part-way (disk full, killed): start over
        elif root.is_dir() and any(p for p in root.iterdir() if not p.name.startswith(".")):
            raise ProjectError(f"{root} is not empty; choose a new or empty folder for the project")
        _mkdir(root)
        try:
            try:
                (root / INIT_MARKER).touch()
            except OSError as exc:
                raise FileWriteError(f"cannot write in {root}: {exc.strerror or exc}") from exc
            meta = {
                "format": FORMAT, "version": FORMAT_VERSION, "created": time.time(), "next_uid": 0,
                "classes": [], "background": list(DEFAULT_BACKGROUND if background is None else background),
                "settings": _deep_merge(DEFAULT_SETTINGS, settings or {}),
                "images_mode": "copy" if copy else "reference", "history": int(history),
            }
            project = cls(root, meta, [], [])
            project._set_classes_no_save(classes)
            _mkdir(root / "annotations")
            _mkdir(root / "cache")
            if copy:
                _mkdir(root / "images")
            if images:
                project.add_images(images, recursive=recursive)
            else:
                project._save_images()
            project._save_meta()  # written last: a folder without project.json is not (yet) a project
            (root / INIT_MARKER).unlink()
        except BaseException:
            if made_root:
                shutil.rmtree(root, ignore_errors=True)
            else:
                _remove_unfinished(root)
            raise
        return project

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Project":
        """Open an existing project. Lazy: reads project.json and images.json only (no image, no label).

        Both files are checked (a damaged or hand-edited file is an error naming it, and an image id or
        file that would lead outside the project is refused). Temporary files left by killed saves in the
        project folder are removed.
        """
        root = Path(root)
        if not (root / PROJECT_FILE).exists() and (root / INIT_MARKER).exists():
            raise ProjectError(f"{root}: creating this project did not finish (e.g. the disk was full or the "
                               "process was killed); run `maskclip project init` on it again, which cleans up")
        meta = _validate_meta(_read_json(root / PROJECT_FILE, "project file"), root / PROJECT_FILE)
        records, skipped = _records_from_json(_read_json(root / IMAGES_FILE, "image list"), root / IMAGES_FILE)
        remove_temp_files(root, TEMP_AGE_S)
        return cls(root, meta, records, skipped)

    # --- images ---------------------------------------------------------------------------------
    @property
    def image_ids(self) -> list[str]:
        return [r.id for r in self._records]

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._by_id

    @property
    def skipped_images(self) -> list[tuple[str, str]]:
        """(path, reason) of every file that could not be imported."""
        return [(s["path"], s["reason"]) for s in self._skipped]

    @property
    def cache_dir(self) -> Path:
        """Dense-feature cache folder: `maskclip.load(..., cache_dir=project.cache_dir)`."""
        return self.root / "cache"

    def record(self, image_id: str) -> ImageRecord:
        try:
            return self._by_id[image_id]
        except KeyError:
            raise ProjectError(f"no image {image_id!r} in project {self.root}") from None

    def image_path(self, image_id: str) -> Path:
        rec = self.record(image_id)
        path = Path(rec.file)
        return path if path.is_absolute() else self.root / path

    def get_image(self, image_id: str) -> np.ndarray:
        """Pixels as stored (maskclip.images.read_image); raises ImageReadError when unreadable."""
        return read_image(self.image_path(image_id))

    @_locked
    def add_images(self, images: str | os.PathLike | Iterable[str | os.PathLike], *,
                   recursive: bool = False) -> ImportReport:
        """Import image files/folders (copied or referenced per the project's mode).

        Ids come from the path below the imported folder ('a/x.png' -> 'a__x'), made unique with a
        '-2', '-3' suffix, so equal names from different folders never collide. Unreadable files are
        skipped and recorded with the reason; a file already imported (same source path) is skipped.
        """
        with self._project_lock():
            self._reload_images_if_changed()  # ids are chosen against the latest list (another process may add)
            snapshot = (list(self._records), dict(self._by_id), list(self._skipped))
            try:
                return self._add_images(images, recursive)
            except BaseException:  # e.g. disk full: memory keeps matching images.json
                self._records, self._by_id, self._skipped = snapshot
                raise

    def _add_images(self, images, recursive: bool) -> ImportReport:
        sources = [images] if isinstance(images, (str, os.PathLike)) else list(images)
        copy_mode = self._meta["images_mode"] == "copy"
        known_sources = {r.source for r in self._records}
        taken = {i.casefold() for i in self._by_id}  # case-insensitive file systems
        added, skipped = [], []
        for src in map(Path, sources):
            not_files: list[tuple[Path, str]] = []
            files = list_images(src, recursive=recursive, skipped=not_files)
            skipped.extend((str(f), reason) for f, reason in not_files)
            for f in files:
                rel = f.relative_to(src).with_suffix("").as_posix() if src.is_dir() else f.stem
                source = str(f.resolve())
                if source in known_sources:
                    skipped.append((str(f), "already in the project"))
                    continue
                try:
                    arr = read_image(f)
                    if arr.ndim < 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
                        raise ImageReadError(f"{f}: image has no pixels (shape {arr.shape})")
                    if arr.ndim > 3 or (arr.ndim == 3 and arr.shape[-1] > 4):
                        raise ImageReadError(f"{f}: unsupported image shape {arr.shape}; expected grey, "
                                             "grey+alpha, RGB or RGBA")
                except ImageReadError as exc:
                    skipped.append((str(f), str(exc)))
                    continue
                base = _base_id(rel)
                image_id, n = base, 1
                while image_id.casefold() in taken:
                    n += 1
                    image_id = f"{base}-{n}"
                taken.add(image_id.casefold())
                if copy_mode:
                    dest = self.root / "images" / f"{image_id}{f.suffix.lower()}"
                    h = hashlib.sha256()
                    with open(f, "rb") as fin, atomic_write(dest, "wb") as fout:
                        for chunk in iter(lambda: fin.read(1 << 20), b""):
                            h.update(chunk)
                            fout.write(chunk)
                    digest, stored, file = h.hexdigest(), dest, dest.relative_to(self.root).as_posix()
                else:
                    digest, stored, file = _sha256_file(f), f, source
                st = os.stat(stored)
                rec = ImageRecord(image_id, file, source, rel, digest, st.st_size, st.st_mtime_ns,
                                  int(arr.shape[0]), int(arr.shape[1]))
                self._records.append(rec)
                self._by_id[image_id] = rec
                known_sources.add(source)
                added.append(image_id)
        self._skipped.extend({"path": p, "reason": r} for p, r in skipped if r != "already in the project")
        self._save_images()
        return ImportReport(added, skipped, [], [])

    def _current_hash(self, rec: ImageRecord) -> str | None:
        """Content hash of the image file now (None when it is gone); re-hashes only when size/mtime moved."""
        path = self.image_path(rec.id)
        try:
            st = os.stat(path)
        except OSError:
            return None
        if st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns:
            return rec.sha256
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._hash_cache:
            try:
                self._hash_cache[key] = _sha256_file(path)
            except OSError:
                return None
        return self._hash_cache[key]

    @_locked
    def is_stale(self, image_id: str) -> bool:
        """True when the image file changed or vanished since its labels were made."""
        rec = self.record(image_id)
        if self._current_hash(rec) != rec.sha256:
            return True
        state = self._state(image_id)
        return bool(state) and state.get("image_sha256", rec.sha256) != rec.sha256

    @_locked
    def accept_image_change(self, image_id: str, keep_labels: bool = False) -> None:
        """Take the image's new content as the project's: its labels are cleared (kept in history) or,
        with keep_labels=True and an unchanged size, kept for the new content (an image without labels is
        accepted at any size)."""
        rec = self.record(image_id)
        path = self.image_path(image_id)
        try:
            arr = read_image(path)
        except ImageReadError as exc:
            raise ProjectError(f"image {image_id!r} cannot be re-read: {exc}") from exc
        st = os.stat(path)
        new = ImageRecord(rec.id, rec.file, rec.source, rec.rel, _sha256_file(path), st.st_size, st.st_mtime_ns,
                          int(arr.shape[0]), int(arr.shape[1]))
        with self._image_lock(image_id):
            old_state = self._state(image_id, full=True)
            if keep_labels and old_state.get("labels") and (new.height, new.width) != (rec.height, rec.width):
                raise ProjectError(
                    f"image {image_id!r} changed size ({rec.height}x{rec.width} -> {new.height}x{new.width}); "
                    "its labels cannot be kept"
                )
            if keep_labels and old_state.get("labels"):
                labels, verified = self._uid_labels(image_id, old_state, (rec.height, rec.width))
            else:
                labels, verified = None, None
            self._replace_record(new)
            if old_state:
                self._commit(image_id, labels, verified, "image changed" + (" (labels kept)" if keep_labels else ""),
                             old_state)

    def _replace_record(self, rec: ImageRecord) -> None:
        with self._project_lock():
            self._reload_images_if_changed()
            old_records, old_rec = self._records, self._by_id[rec.id]
            self._records = [rec if r.id == rec.id else r for r in self._records]
            self._by_id[rec.id] = rec
            try:
                self._save_images()
            except BaseException:
                self._records, self._by_id[rec.id] = old_records, old_rec
                raise

    # --- classes --------------------------------------------------------------------------------
    @property
    def classes(self) -> list[ClassInfo]:
        return list(self._classes)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self._classes]

    @property
    def class_colours(self) -> list[tuple[int, int, int]]:
        return [c.colour for c in self._classes]

    @property
    def prompts(self) -> list[list[str]]:
        """The `classes` argument for MaskCLIP.segment (name + synonyms per class, project order)."""
        return [c.prompt for c in self._classes]

    def class_index(self, name: str) -> int:
        try:
            return self._name_to_index[name]
        except KeyError:
            raise ProjectError(f"no class named {name!r} (classes: {', '.join(self.class_names) or 'none'})") from None

    @_meta_op
    def add_class(self, name: str, synonyms: Sequence[str] = (), colour: Sequence[int] | None = None) -> ClassInfo:
        """Append a class (new uid); existing labels are unaffected."""
        info = self._new_class(name, synonyms, colour)
        self._classes.append(info)
        self._classes_changed()
        return info

    @_meta_op
    def remove_class(self, name: str) -> None:
        """Remove a class: its stored pixels read as 255 (unlabelled) and lose their verified flag."""
        i = self.class_index(name)
        del self._classes[i]
        self._classes_changed()

    @_meta_op
    def rename_class(self, old: str, new: str) -> None:
        """Rename; the uid, colour, synonyms and every stored label stay with the class."""
        i = self.class_index(old)
        new = _check_name(new)
        self._check_free(new, ignore=i)
        c = self._classes[i]
        self._classes[i] = ClassInfo(c.uid, new, c.synonyms, c.colour)
        self._classes_changed()

    @_meta_op
    def reorder_classes(self, names: Sequence[str]) -> None:
        """Put the classes in this order (a permutation of class_names); labels follow their class."""
        if sorted(names) != sorted(self.class_names):
            raise ProjectError(f"reorder needs every class exactly once: got {list(names)}, have {self.class_names}")
        self._classes = [self._classes[self.class_index(n)] for n in names]
        self._classes_changed()

    @_meta_op
    def set_class_synonyms(self, name: str, synonyms: Sequence[str]) -> None:
        i = self.class_index(name)
        c = self._classes[i]
        self._classes[i] = ClassInfo(c.uid, c.name, self._check_synonyms(synonyms, c.name), c.colour)
        self._classes_changed()

    @_meta_op
    def set_class_colour(self, name: str, colour: Sequence[int]) -> None:
        i = self.class_index(name)
        c = self._classes[i]
        self._classes[i] = ClassInfo(c.uid, c.name, c.synonyms, _check_colour(colour))
        self._classes_changed()

    @_meta_op
    def set_classes(self, classes: Sequence[str | Sequence[str] | Mapping]) -> None:
        """Replace the class list. Items: "name", ["name", "synonym", ...] or {name, synonyms, colour}.
        A name already in the project keeps its uid (so its labels); classes not listed are removed."""
        self._set_classes_no_save(classes)
        self._classes_changed()

    def _set_classes_no_save(self, classes) -> None:
        old = {c.name: c for c in self._classes}
        specs = []
        for spec in classes:
            if isinstance(spec, Mapping):
                name, syn, col = spec.get("name"), spec.get("synonyms", ()), spec.get("colour", spec.get("color"))
            elif isinstance(spec, str):
                name, syn, col = spec, (), None
            else:
                spec = list(spec)
                if not spec:
                    raise ProjectError("empty class entry")
                name, syn, col = spec[0], spec[1:], None
            specs.append((_check_name(name), syn, col))
        folded = [n.casefold() for n, _, _ in specs]
        dup = sorted({n for n, _, _ in specs if folded.count(n.casefold()) > 1})
        if dup:
            raise ProjectError(f"class names must be unique: {dup} appear more than once")
        if len(specs) > MAX_CLASSES:
            raise ProjectError(f"at most {MAX_CLASSES} classes are supported (index 255 means unlabelled)")
        result: list[ClassInfo] = []
        for name, syn, col in specs:
            if name in old:
                c = old[name]
                result.append(ClassInfo(c.uid, name, self._check_synonyms(syn, name) if syn else c.synonyms,
                                        _check_colour(col) if col is not None else c.colour))
        for name, syn, col in specs:  # new classes pick colours not used by the kept ones
            if name not in old:
                result.insert([n for n, _, _ in specs].index(name), self._new_class(name, syn, col, result))
        self._classes = result
        self._reindex_classes()

    def _new_class(self, name, synonyms, colour, existing=None) -> ClassInfo:
        name = _check_name(name)
        existing = self._classes if existing is None else existing
        if any(c.name.casefold() == name.casefold() for c in existing):
            raise ProjectError(f"a class named {name!r} already exists")
        if len(existing) >= MAX_CLASSES:
            raise ProjectError(f"at most {MAX_CLASSES} classes are supported (index 255 means unlabelled)")
        if colour is None:
            used = {c.colour for c in existing}
            colour = next(c for c in voc_palette(256)[1:] + [(0, 0, 0)] if c not in used)
        uid = int(self._meta["next_uid"])
        self._meta["next_uid"] = uid + 1
        return ClassInfo(uid, name, self._check_synonyms(synonyms, name), _check_colour(colour))

    def _check_free(self, name: str, ignore: int) -> None:
        for j, c in enumerate(self._classes):
            if j != ignore and c.name.casefold() == name.casefold():
                raise ProjectError(f"a class named {c.name!r} already exists")

    @staticmethod
    def _check_synonyms(synonyms, name) -> tuple[str, ...]:
        if isinstance(synonyms, str):
            synonyms = [synonyms]
        out = tuple(_check_name(s) for s in synonyms)
        return tuple(s for s in dict.fromkeys(out) if s != name)

    @staticmethod
    def _class_from_json(c: dict) -> ClassInfo:
        return ClassInfo(int(c["uid"]), c["name"], tuple(c.get("synonyms", ())), tuple(c["colour"]))

    def _reindex_classes(self) -> None:
        self._name_to_index = {c.name: i for i, c in enumerate(self._classes)}
        self._uid_to_index = {c.uid: i for i, c in enumerate(self._classes)}

    def _classes_changed(self) -> None:
        self._reindex_classes()
        self._save_meta()

    # --- background prompts and settings -------------------------------------------------------
    @property
    def background(self) -> list[str]:
        """Background prompts merged into one 'background' label by MaskCLIP.segment."""
        return list(self._meta["background"])

    @_meta_op
    def set_background(self, prompts: Sequence[str]) -> None:
        self._meta["background"] = [_check_name(p) for p in prompts]
        self._save_meta()

    @property
    def settings(self) -> dict:
        """Model and method settings (a copy): {"model": {...}, "method": {...}, other sections...}."""
        return copy.deepcopy(self._meta["settings"])

    @_meta_op
    def update_settings(self, update: Mapping) -> None:
        """Deep-merge `update` into the settings and save (e.g. {"method": {"key_smoothing": False}})."""
        self._meta["settings"] = _deep_merge(self._meta["settings"], update)
        self._save_meta()

    # --- labels ---------------------------------------------------------------------------------
    @_locked
    def has_labels(self, image_id: str) -> bool:
        return bool(self._state(image_id).get("labels"))

    def get_labels(self, image_id: str, *, allow_stale: bool = False) -> np.ndarray:
        """Current labels (uint8 HxW, project class indices, 255 = unlabelled; all 255 when none).

        Raises StaleImageError when the image changed on disk (allow_stale=True reads them anyway,
        e.g. to show what was there).
        """
        return self.get_labels_and_verified(image_id, allow_stale=allow_stale)[0]

    def get_verified(self, image_id: str, *, allow_stale: bool = False) -> np.ndarray:
        """Verified-pixel mask (bool HxW): pixels a person set or confirmed."""
        return self.get_labels_and_verified(image_id, allow_stale=allow_stale)[1]

    @_locked
    def get_labels_and_verified(self, image_id: str, *, allow_stale: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Labels and verified mask of one revision, read together.

        What was read is remembered as what the caller holds: a later set_labels / set_verified from this
        instance takes only the pixels the caller changed from it (see set_labels)."""
        rec = self.record(image_id)
        if not allow_stale:
            self._check_not_stale(image_id)
        uids, verified = self._uid_labels(image_id, self._state(image_id), (rec.height, rec.width))
        self._hold(image_id, uids, verified)
        return self._view(uids, verified)

    @_locked
    def set_labels(self, image_id: str, labels: np.ndarray, verified: np.ndarray | None = None, *,
                   mark_changed_verified: bool = False, source: str = "manual",
                   base: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Store a person's edit (predictions must use merge_prediction). verified=None keeps the mask the
        caller holds; mark_changed_verified=True also marks every pixel the caller changed as verified (paint
        strokes). A verified 255 pixel is confirmed background (none of the classes): predictions leave it
        unlabelled.

        Only the pixels the caller changed (labels or verified flag) relative to the copy it holds are taken
        from `labels`/`verified`; every other pixel keeps the latest committed revision, so pixels other
        writers (another process, a prediction) committed meanwhile are never reverted. The copy the caller
        holds is `base` (labels, verified) when given: a caller that adopts merged results into its own copy
        (the annotator) passes what its edit started from. Without it, it is what this instance last
        returned to the caller for the image (get_labels...) or the caller last submitted, so a caller that
        keeps saving from its own copy without re-reading loses nothing. Returns the labels now stored."""
        rec = self.record(image_id)
        self._check_not_stale(image_id)
        labels = self._check_labels(labels, rec)
        mask = None if verified is None else self._check_mask(verified, rec)
        held = None if base is None else self._caller_base(base, rec)
        with self._image_lock(image_id):
            state = self._state(image_id, full=True)
            latest, latest_v, base_u, base_v, known = self._latest_and_base(image_id, state, rec, held)
            shown, shown_v = self._view(base_u, base_v)  # what the caller holds (classes it knows)
            changed = labels != shown
            new = np.where(changed, self._uids_of(labels), base_u)
            new_v = shown_v if mask is None else mask
            if mark_changed_verified:
                new_v = new_v | changed
            if known:
                result, result_v = merge_edit(latest, latest_v, new, new_v, changed | (new_v != shown_v))
            else:  # the caller's copy is not known: keep every pixel verified since, unless re-verified
                keep = latest_v & ~new_v
                result, result_v = np.where(keep, latest, new), new_v | latest_v
            stored = self._commit(image_id, result, result_v, source, state)
            self._hold(image_id, new, new_v)  # the caller keeps its copy, not the merged revision
            return stored

    @_locked
    def set_verified(self, image_id: str, mask: np.ndarray, *, source: str = "verify",
                     base: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Replace the verified mask (verified unlabelled pixels are confirmed background); merged like
        set_labels: only the flags the caller changed relative to the copy it holds are taken."""
        rec = self.record(image_id)
        self._check_not_stale(image_id)
        mask = self._check_mask(mask, rec)
        held = None if base is None else self._caller_base(base, rec)
        with self._image_lock(image_id):
            state = self._state(image_id, full=True)
            latest, latest_v, base_u, base_v, known = self._latest_and_base(image_id, state, rec, held)
            shown_v = self._view(base_u, base_v)[1]
            result_v = np.where(mask != shown_v, mask, latest_v) if known else mask | latest_v
            self._commit(image_id, latest, result_v, source, state)
            self._hold(image_id, base_u, mask)

    def project_labels(self, labels: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
        """Labels whose value i means class_names[i] (a Segmentation's) as project class indices; names the
        project lacks (background prompts) become 255."""
        labels = np.asarray(labels)
        lut = np.full(max(len(class_names), 1), UNLABELLED, np.uint8)
        for i, name in enumerate(class_names):
            lut[i] = self._name_to_index.get(name, UNLABELLED)
        if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise ProjectError(f"prediction values must lie in 0..{len(class_names) - 1} (one per class name)")
        return lut[labels]

    @_locked
    def merge_prediction(self, image_id: str, labels: np.ndarray, confidence: np.ndarray | None = None, *,
                         class_names: Sequence[str] | None = None, min_confidence: float = 0.0,
                         source: str = "prediction") -> np.ndarray:
        """Merge labels from segmentation or refinement; verified pixels keep their labels. Returns the result.

        labels: HxW ints. With class_names (e.g. Segmentation.class_names) value i means class_names[i]
        and is mapped to the project class of that name (names the project lacks -> 255); without it the
        values are project class indices. Pixels whose confidence (HxW) is below min_confidence (0..1)
        become 255 (unlabelled) unless verified. The merge is made on the latest revision under the image's
        lock, so verified pixels another process (the annotator) commits meanwhile are kept.
        """
        rec = self.record(image_id)
        check_probability(min_confidence, "min_confidence")
        self._check_not_stale(image_id)
        pred = np.asarray(labels)
        if pred.shape != (rec.height, rec.width):
            raise ProjectError(f"prediction for {image_id!r} has shape {pred.shape}, "
                               f"image is {(rec.height, rec.width)}")
        if pred.dtype.kind not in "iu":
            raise ProjectError(f"prediction labels must be integers, got dtype {pred.dtype}")
        if class_names is not None:
            pred = self.project_labels(pred, class_names)
        pred = self._check_labels(pred, rec)
        if confidence is not None:
            conf = np.asarray(confidence)
            if conf.shape != pred.shape:
                raise ProjectError(f"confidence has shape {conf.shape}, labels have {pred.shape}")
            pred = np.where(conf >= min_confidence, pred, UNLABELLED).astype(np.uint8)
        with self._image_lock(image_id):
            state = self._state(image_id, full=True)
            old, verified = self._uid_labels(image_id, state, (rec.height, rec.width))
            merged = self._commit(image_id, np.where(verified, old, self._uids_of(pred)), verified, source, state)
        return merged

    @_locked
    def import_labels(self, source: str | os.PathLike, *, verified: bool = False, format: str = "auto") -> ImportReport:
        """Import label images named like the project's images (see maskclip.export.open_labels).

        A label file matches an image by id, by its path below the imported image folder, or by file stem
        when that stem is unique in the project. When the source names its classes (classes.json, VOC
        labels.txt, COCO categories) values are mapped by class name and missing classes are added;
        otherwise values are project class indices. verified=True stores them as a person's labels
        (every labelled pixel verified); otherwise they merge like a prediction (verified pixels kept).
        """
        from .export import open_labels

        labelset = open_labels(source, format)
        new_classes: list[str] = []
        lut = None
        if labelset.class_names is not None:
            for i, name in enumerate(labelset.class_names):
                if name not in self._name_to_index:
                    colour = labelset.colours[i] if labelset.colours else None
                    used = {c.colour for c in self._classes}
                    self.add_class(name, colour=colour if colour not in used else None)
                    new_classes.append(name)
            lut = np.full(256, UNLABELLED, np.uint8)
            for i, name in enumerate(labelset.class_names):
                lut[i] = self._name_to_index[name]
        stems: dict[str, list[str]] = {}
        for rec in self._records:
            stems.setdefault(Path(rec.rel).name, []).append(rec.id)
        added, skipped, missing = [], [], []
        for rec in self._records:
            candidates = [rec.id, rec.rel] + ([Path(rec.rel).name] if len(stems[Path(rec.rel).name]) == 1 else [])
            key = next((k for k in candidates if k in labelset), None)
            if key is None:
                missing.append(rec.id)
                continue
            try:
                raw = labelset.read(key)
                if lut is not None:
                    bad = (raw != UNLABELLED) & (raw >= len(labelset.class_names))
                    if bad.any():
                        raise ProjectError(f"value {int(raw[bad][0])} but the label set names only "
                                           f"{len(labelset.class_names)} classes")
                    raw = lut[raw]
                if self.is_stale(rec.id):
                    raise StaleImageError("the image changed since import (stale)")
                if verified:
                    labels = self._check_labels(raw, rec)
                    with self._image_lock(rec.id):
                        self._commit(rec.id, self._uids_of(labels), labels != UNLABELLED, "import (verified)",
                                     self._state(rec.id, full=True))
                else:
                    self.merge_prediction(rec.id, raw, source="import")
            except MaskCLIPError as exc:
                skipped.append((rec.id, str(exc)))
                continue
            added.append(rec.id)
        self.flush()
        return ImportReport(added, skipped, missing, new_classes)

    @_locked
    def clear_labels(self, image_id: str) -> None:
        """Drop the labels and verified mask (the previous revision stays in history)."""
        self.record(image_id)
        with self._image_lock(image_id):
            try:
                state = self._state(image_id, full=True)
            except ProjectError:  # a damaged state.json: clearing starts the image over
                state = {}
            self._commit(image_id, None, None, "clear", state)

    @_locked
    def history(self, image_id: str) -> list[dict]:
        """Revisions, oldest first: {"rev", "source", "time", "current"}."""
        state = self._state(image_id, full=True)
        if not state:
            return []
        entries = state.get("history", []) + [state]
        return [{"rev": e["rev"], "source": e.get("source", ""), "time": e.get("time", 0.0),
                 "current": e is state} for e in entries]

    @_locked
    def get_revision(self, image_id: str, rev: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels and verified mask of an earlier revision (in current class indices)."""
        rec = self.record(image_id)
        return self._load_revision(image_id, self._find_revision(image_id, rev), (rec.height, rec.width))

    @_locked
    def restore_revision(self, image_id: str, rev: int) -> None:
        """Undo: make an earlier revision current again (labels and verified mask), as a new revision."""
        rec = self.record(image_id)
        self._check_not_stale(image_id)
        with self._image_lock(image_id):
            entry = self._find_revision(image_id, rev)
            labels, verified = self._uid_labels(image_id, entry, (rec.height, rec.width))
            self._commit(image_id, labels if entry.get("labels") else None, verified, f"restore r{rev}",
                         self._state(image_id, full=True))

    def _find_revision(self, image_id: str, rev: int) -> dict:
        state = self._state(image_id, full=True)
        for e in state.get("history", []) + ([state] if state else []):
            if e["rev"] == rev:
                return e
        raise ProjectError(f"image {image_id!r} has no revision {rev} (kept: "
                           f"{[h['rev'] for h in self.history(image_id)]})")

    # --- statistics -----------------------------------------------------------------------------
    @_locked
    def list_images(self) -> list[ImageState]:
        """State of every image, in project order. Costs one stat per image and label state (cached)."""
        states = self._all_states()
        out = []
        for rec in self._records:
            state = states.get(rec.id, {})
            labelled, verified = self._counts_now(state)
            stale = self._current_hash(rec) != rec.sha256 or (bool(state) and state.get("image_sha256") != rec.sha256)
            out.append(ImageState(rec.id, self.image_path(rec.id), rec.height, rec.width, int(state.get("rev", 0)),
                                  sum(labelled), sum(verified), stale, int(state.get("verified_background", 0))))
        return out

    @_locked
    def image_state(self, image_id: str) -> ImageState:
        rec = self.record(image_id)
        state = self._state(image_id)
        labelled, verified = self._counts_now(state)
        return ImageState(rec.id, self.image_path(rec.id), rec.height, rec.width, int(state.get("rev", 0)),
                          sum(labelled), sum(verified), self.is_stale(image_id),
                          int(state.get("verified_background", 0)))

    @_locked
    def class_pixel_counts(self, verified_only: bool = False) -> dict[str, int]:
        """Pixels per class over the project's images (stale images excluded)."""
        labelled, verified = self._class_totals(self.list_images())
        return dict(zip(self.class_names, map(int, verified if verified_only else labelled)))

    @_locked
    def status(self) -> dict:
        """Summary for `maskclip project status` and the annotator."""
        states = self.list_images()
        fresh = [s for s in states if not s.stale]
        pixels = sum(s.pixels for s in fresh)
        labelled, verified = self._class_totals(states)
        return {
            "project": str(self.root),
            "images": len(states),
            "broken": self.broken_images(),
            "labelled": sum(1 for s in fresh if s.labelled_pixels),
            "verified_images": sum(1 for s in fresh if s.status == "verified"),
            "stale": [s.id for s in states if s.stale],
            "skipped_at_import": [{"path": p, "reason": r} for p, r in self.skipped_images],
            "labelled_fraction": sum(s.labelled_pixels for s in fresh) / pixels if pixels else 0.0,
            "verified_fraction": sum(s.verified_pixels for s in fresh) / pixels if pixels else 0.0,
            "classes": self.class_names,
            "class_pixels": dict(zip(self.class_names, map(int, labelled))),
            "class_verified_pixels": dict(zip(self.class_names, map(int, verified))),
        }

    @_locked
    def broken_images(self) -> list[dict]:
        """Images whose label state or current label files are damaged or missing: [{"id", "problem"}].

        Checks without decoding (each file's PNG signature and end marker), so it is cheap enough for
        `project status`; such images are skipped by segment, refine, train and export."""
        broken = []
        states = self._all_states()
        for rec in self._records:
            if rec.id in self._state_errors:
                broken.append({"id": rec.id, "problem": self._state_errors[rec.id]})
                continue
            state = states.get(rec.id, {})
            for key in ("labels", "verified"):
                if state.get(key):
                    problem = _png_problem(self._ann_dir(rec.id) / state[key])
                    if problem:
                        broken.append({"id": rec.id, "problem": f"current {key} file {problem}"})
                        break
        return broken

    def _class_totals(self, images: list[ImageState]) -> tuple[np.ndarray, np.ndarray]:
        """Per-class (labelled, verified) pixel sums over the non-stale images of a fresh list_images()."""
        labelled = np.zeros(len(self._classes), np.int64)
        verified = np.zeros(len(self._classes), np.int64)
        summary = self._load_summary()
        for s in images:
            if not s.stale and s.rev:
                n, nv = self._counts_now(summary.get(s.id, {}).get("state", {}))
                labelled += n
                verified += nv
        return labelled, verified

    @_locked
    def flush(self) -> None:
        """Write the summary cache if it changed (labels themselves are always already on disk)."""
        if self._summary is not None and self._summary_dirty:
            try:
                _write_json(self.root / SUMMARY_FILE, {"version": FORMAT_VERSION, "states": self._summary})
                self._summary_dirty = False
            except MaskCLIPError:
                pass  # only a cache: a read-only project still works, just slower to summarise

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()

    # --- internals: per-image state -------------------------------------------------------------
    def _ann_dir(self, image_id: str) -> Path:
        return self.root / "annotations" / image_id

    def _state_sig(self, image_id: str) -> list[int] | None:
        try:
            st = os.stat(self._ann_dir(image_id) / "state.json")
        except OSError:
            return None
        return [st.st_ino, st.st_mtime_ns, st.st_size]

    def _load_summary(self) -> dict:
        if self._summary is None:
            path = self.root / SUMMARY_FILE
            try:
                data = _read_json(path, "summary cache")
                self._summary = dict(data["states"]) if data.get("version") == FORMAT_VERSION else {}
            except (ProjectError, KeyError, TypeError):
                self._summary = {}
        return self._summary

    def _state(self, image_id: str, full: bool = False) -> dict:
        """The image's committed state ({} when never labelled), re-read when its file changed.

        The summary cache keeps states without their history (it must stay small for 100 000 images);
        full=True reads state.json itself, history included.
        """
        summary = self._load_summary()
        sig = self._state_sig(image_id)
        cached = summary.get(image_id)
        if sig is None:
            if cached is not None:
                del summary[image_id]
                self._summary_dirty = True
            return {}
        if not full and cached is not None and cached.get("sig") == sig:
            return cached["state"]
        path = self._ann_dir(image_id) / "state.json"
        state = _validate_state(_read_json(path, "label state"), path)
        self._cache_state(image_id, sig, state)
        return state

    def _cache_state(self, image_id: str, sig: list[int] | None, state: dict) -> None:
        compact = {k: v for k, v in state.items() if k != "history"}
        summary = self._load_summary()
        if summary.get(image_id) != {"sig": sig, "state": compact}:
            summary[image_id] = {"sig": sig, "state": compact}
            self._summary_dirty = True

    def _all_states(self) -> dict[str, dict]:
        """Every image's state; one whose state.json is damaged counts as unlabelled and is listed in
        _state_errors (status reports it) instead of stopping the whole listing."""
        states = {}
        self._state_errors = {}
        for rec in self._records:
            try:
                states[rec.id] = self._state(rec.id)
            except ProjectError as exc:
                self._state_errors[rec.id] = str(exc)
        self.flush()
        return {k: v for k, v in states.items() if v}

    def _counts_now(self, state: dict) -> tuple[list[int], list[int]]:
        """Per current class (labelled, verified) pixel counts of a state, through the uid mapping."""
        labelled = [0] * len(self._classes)
        verified = [0] * len(self._classes)
        for uid, n in state.get("counts", {}).items():
            i = self._uid_to_index.get(int(uid))
            if i is not None:
                labelled[i] += n
        for uid, n in state.get("verified_counts", {}).items():
            i = self._uid_to_index.get(int(uid))
            if i is not None:
                verified[i] += n
        return labelled, verified

    def _check_not_stale(self, image_id: str) -> None:
        if self.is_stale(image_id):
            raise StaleImageError(
                f"image {image_id!r} ({self.image_path(image_id)}) changed or vanished since it was labelled; its "
                "labels are not applied. Restore the file, or accept the new content "
                "(Project.accept_image_change) to start over"
            )

    def _check_labels(self, labels: np.ndarray, rec: ImageRecord) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != (rec.height, rec.width):
            raise ProjectError(f"labels for {rec.id!r} have shape {labels.shape}, image is {(rec.height, rec.width)}")
        if labels.dtype.kind not in "iu":
            raise ProjectError(f"labels must be integer class indices, got dtype {labels.dtype}")
        if labels.size:
            bad = (labels != UNLABELLED) & ((labels < 0) | (labels >= len(self._classes)))
            if bad.any():
                raise ProjectError(
                    f"labels for {rec.id!r} contain value {int(labels[bad][0])}; the project has "
                    f"{len(self._classes)} classes (0..{len(self._classes) - 1}, 255 = unlabelled)"
                )
        return labels.astype(np.uint8)

    @staticmethod
    def _check_mask(mask: np.ndarray, rec: ImageRecord) -> np.ndarray:
        mask = np.asarray(mask)
        if mask.shape != (rec.height, rec.width):
            raise ProjectError(f"verified mask for {rec.id!r} has shape {mask.shape}, "
                               f"image is {(rec.height, rec.width)}")
        return mask.astype(bool)

    def _revision_file(self, image_id: str, entry: dict, key: str) -> Path:
        name = entry[key]
        if not isinstance(name, str) or not _REVISION_FILE.fullmatch(name):  # e.g. a hand-edited summary.json
            raise ProjectError(f"image {image_id!r}: its label state names the file {name!r}, which is not one of "
                               "the project's revision files; delete summary.json and try again")
        return self._ann_dir(image_id) / name

    def _uid_labels(self, image_id: str, entry: dict, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Labels of a state/history entry as class uids (int32 HxW, -1 = unlabelled) and its verified mask.

        Merges work in uids, not indices, so classes another process added after this instance read
        project.json (uids >= its next_uid) keep their pixels through a merge; classes this instance knows
        were removed read as unlabelled."""
        if not entry or not entry.get("labels"):
            return np.full(shape, -1, np.int32), np.zeros(shape, bool)
        path = self._revision_file(image_id, entry, "labels")
        try:
            raw = read_label_image(path)
        except ImageReadError as exc:
            raise ProjectError(f"labels of image {image_id!r} are unreadable: {exc}. Restore an earlier revision "
                               "(Project.restore_revision) or clear the image's labels") from exc
        if raw.shape != shape:
            raise ProjectError(f"labels of image {image_id!r} have shape {raw.shape}, image is {shape}")
        horizon = int(self._meta["next_uid"])
        lut = np.full(256, -1, np.int32)
        for i, uid in enumerate(entry.get("class_uids", [])[:UNLABELLED]):
            if uid in self._uid_to_index or uid >= horizon:
                lut[i] = uid
        labels = lut[raw]
        if entry.get("verified"):
            # a removed class's pixels lose their flag; stored 255 pixels keep it (confirmed background)
            kept = (labels >= 0) | (raw == UNLABELLED)
            verified = _read_mask_png(self._revision_file(image_id, entry, "verified"), shape) & kept
        else:
            verified = np.zeros(shape, bool)
        return labels, verified

    def _uids_of(self, labels: np.ndarray) -> np.ndarray:
        """Current class indices (255 = unlabelled) -> class uids (-1 = unlabelled)."""
        lut = np.full(256, -1, np.int32)
        lut[:len(self._classes)] = [c.uid for c in self._classes]
        return lut[labels]

    def _indices_of(self, uids: np.ndarray) -> np.ndarray:
        """Class uids -> current class indices; unlabelled and classes unknown here -> 255."""
        top = max(int(uids.max(initial=-1)), max(self._uid_to_index, default=-1))
        lut = np.full(top + 2, UNLABELLED, np.uint8)
        for uid, i in self._uid_to_index.items():
            lut[uid + 1] = i
        return lut[uids + 1]

    def _view(self, uids: np.ndarray, verified: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What readers of this instance see of uid labels: current class indices, and verified pixels of
        classes it knows (pixels of classes it does not know read as unlabelled and unverified; verified
        unlabelled pixels stay verified: confirmed background)."""
        labels = self._indices_of(uids)
        return labels, verified & ((labels != UNLABELLED) | (uids < 0))

    def _load_revision(self, image_id: str, entry: dict, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Labels (remapped to current class indices) and verified mask of one state/history entry."""
        return self._view(*self._uid_labels(image_id, entry, shape))

    def _latest_and_base(self, image_id: str, state: dict, rec: ImageRecord,
                         held: tuple[np.ndarray, np.ndarray] | None):
        """(latest uids, latest verified, base uids, base verified, base known): latest is what is committed,
        base the copy the caller's edit started from (`held` when the caller passed it, else what this
        instance remembers; the latest revision for a caller that never read the image)."""
        latest, latest_v = self._uid_labels(image_id, state, (rec.height, rec.width))
        if held is None:
            held = self._held.get(image_id)
        if held is None:
            return latest, latest_v, latest, latest_v, image_id not in self._forgotten
        return latest, latest_v, held[0], held[1], True

    def _caller_base(self, base: tuple[np.ndarray, np.ndarray], rec: ImageRecord) -> tuple[np.ndarray, np.ndarray]:
        """A caller's (labels, verified) in current class indices -> (uids, verified)."""
        if not isinstance(base, (tuple, list)) or len(base) != 2:
            raise ProjectError("base must be the (labels, verified) pair the edit started from")
        return self._uids_of(self._check_labels(base[0], rec)), self._check_mask(base[1], rec)

    def _hold(self, image_id: str, uids: np.ndarray, verified: np.ndarray) -> None:
        """Remember what the caller now holds for an image (the merge base of its next save); bounded."""
        self._held[image_id] = (np.array(uids, np.int32), np.array(verified, bool))
        self._held.move_to_end(image_id)
        self._forgotten.discard(image_id)
        while len(self._held) > HELD_IMAGES:
            self._forgotten.add(self._held.popitem(last=False)[0])

    def _commit(self, image_id: str, labels: np.ndarray | None, verified: np.ndarray | None, source: str,
                old: dict) -> np.ndarray | None:
        """Write a new revision: its PNGs under fresh names, then state.json (the atomic commit point).

        Call under the image's lock with `old`, its latest full state read under that lock. labels are
        class uids (-1 = unlabelled). Returns the stored labels in current class indices.
        """
        rec = self.record(image_id)
        folder = self._ann_dir(image_id)
        rev = int(old.get("rev", 0)) + 1
        stem = f"r{rev:06d}-{secrets.token_hex(4)}"
        ours = [c.uid for c in self._classes]
        entry: dict = {"rev": rev, "source": source, "time": time.time(), "labels": None, "verified": None,
                       "class_uids": ours}
        written: list[Path] = []
        counts: dict[str, int] = {}
        verified_counts: dict[str, int] = {}
        stored = None
        verified_background = 0
        try:
            if labels is not None:
                labels = labels.astype(np.int32, copy=False)
                present = np.flatnonzero(np.bincount(labels.ravel() + 1)) - 1
                extra = sorted(set(present.tolist()) - set(ours) - {-1})  # classes added by another process
                class_uids = (ours + extra)[:UNLABELLED]
                lut = np.full(int(present.max(initial=-1)) + 2, UNLABELLED, np.uint8)
                for i, uid in enumerate(class_uids):
                    if uid <= present.max(initial=-1):
                        lut[uid + 1] = i
                raw = lut[labels + 1]
                # verified 255 pixels stay verified (confirmed background) unless they were a class dropped here
                verified = (np.zeros(raw.shape, bool) if verified is None else verified) & (
                    (raw != UNLABELLED) | (labels == -1))
                palette = self.class_colours + voc_palette(len(class_uids))[len(ours):]
                path = folder / f"{stem}.labels.png"
                write_index_png(path, raw, palette=palette)
                written.append(path)
                entry.update(labels=path.name, class_uids=class_uids)
                if verified.any():
                    path = folder / f"{stem}.verified.png"
                    _write_mask_png(path, verified)
                    written.append(path)
                    entry["verified"] = path.name
                n = np.bincount(raw.ravel(), minlength=256)
                nv = np.bincount(raw[verified].ravel(), minlength=256)
                for i, uid in enumerate(class_uids):
                    if n[i]:
                        counts[str(uid)] = int(n[i])
                    if nv[i]:
                        verified_counts[str(uid)] = int(nv[i])
                stored = self._indices_of(labels)
                verified_background = int(nv[UNLABELLED])
            history = list(old.get("history", []))
            if old:
                history.append({k: old[k] for k in ("rev", "source", "time", "labels", "verified", "class_uids")
                                if k in old})
            limit = int(self._meta.get("history", DEFAULT_HISTORY))
            dropped, history = history[:max(0, len(history) - limit)], history[max(0, len(history) - limit):]
            state = dict(entry, image_sha256=rec.sha256, counts=counts, verified_counts=verified_counts,
                         verified_background=verified_background, history=history)
            _write_json(folder / "state.json", state)
        except BaseException:
            for path in written:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        self._cache_state(image_id, self._state_sig(image_id), state)
        if labels is None:  # cleared
            labels, verified = np.full((rec.height, rec.width), -1, np.int32), np.zeros((rec.height, rec.width), bool)
        self._hold(image_id, labels, verified)  # the caller holds what was committed (set_labels holds its own)
        self._prune(folder, state, dropped)
        return stored

    @staticmethod
    def _prune(folder: Path, state: dict, dropped: list[dict]) -> None:
        """Delete revision files that fell out of history, old leftovers of killed saves, and temporary files
        (every writer of this folder holds its lock, so none is being written now). Nothing else is touched."""
        keep = {state.get("labels"), state.get("verified")}
        for h in state["history"]:
            keep.update((h.get("labels"), h.get("verified")))
        gone = {name for d in dropped for name in (d.get("labels"), d.get("verified")) if name}
        now = time.time()
        for entry in folder.iterdir():
            name = entry.name
            if name in keep or not _REVISION_FILE.fullmatch(name):
                continue
            try:
                if name in gone or now - entry.stat().st_mtime > ORPHAN_AGE_S:
                    entry.unlink()
            except OSError:
                pass
        remove_temp_files(folder)

    # --- internals: locks and project files -----------------------------------------------------
    def _file_lock(self, path: Path, what: str):
        lock = self._file_locks.get(path)
        if lock is None:  # one instance per file: re-entrant within this Project (calls nest)
            lock = self._file_locks[path] = FileLock(path, timeout=LOCK_TIMEOUT_S, thread_local=False)
        return _hold(lock, what)

    def _project_lock(self):
        """Inter-process lock for project.json and images.json updates (read-modify-write)."""
        return self._file_lock(self.root / PROJECT_LOCK, f"project {self.root}")

    def _image_lock(self, image_id: str):
        """Inter-process lock for one image's revisions: every commit reads the latest state under it."""
        folder = self._ann_dir(image_id)
        _mkdir(folder)
        return self._file_lock(folder / IMAGE_LOCK, f"image {image_id!r} of project {self.root}")

    def _reload_meta_if_changed(self) -> None:
        """Take project.json as another process left it (call under the project lock)."""
        path = self.root / PROJECT_FILE
        sig = _file_sig(path)
        if sig is None or sig == self._meta_sig:
            return
        meta = _validate_meta(_read_json(path, "project file"), path)
        self._meta, self._saved_meta, self._meta_sig = meta, copy.deepcopy(meta), sig
        self._classes = [self._class_from_json(c) for c in meta["classes"]]
        self._reindex_classes()

    def _reload_images_if_changed(self) -> None:
        """Take images.json as another process left it (call under the project lock)."""
        path = self.root / IMAGES_FILE
        sig = _file_sig(path)
        if sig is None or sig == self._images_sig:
            return
        self._records, self._skipped = _records_from_json(_read_json(path, "image list"), path)
        self._by_id = {r.id: r for r in self._records}
        self._images_sig = sig

    def _save_meta(self) -> None:
        """Write project.json; when that fails, undo the in-memory change too (memory matches disk)."""
        self._meta["classes"] = [c.to_json() for c in self._classes]
        try:
            _write_json(self.root / PROJECT_FILE, self._meta)
        except BaseException:
            self._meta = copy.deepcopy(self._saved_meta)
            self._classes = [self._class_from_json(c) for c in self._meta["classes"]]
            self._reindex_classes()
            raise
        self._saved_meta = copy.deepcopy(self._meta)
        self._meta_sig = _file_sig(self.root / PROJECT_FILE)

    def _save_images(self) -> None:
        _write_json(self.root / IMAGES_FILE, {"version": FORMAT_VERSION,
                                              "images": [r.to_json() for r in self._records],
                                              "skipped": self._skipped})
        self._images_sig = _file_sig(self.root / IMAGES_FILE)
