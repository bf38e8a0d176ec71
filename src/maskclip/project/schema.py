"""The on-disk schema: file names, format constants, defaults, and the checks of what is read from
project.json, images.json and state.json, as pure functions on dicts (no I/O; `path` only names the file
in messages).

The files are data from outside (damaged, edited by hand, written by a newer version): every field that
later names a file, a folder or an array index is checked here, so nothing read can lead a write or a
delete out of the project.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from ..defaults import DEFAULT_BACKGROUND, DEFAULT_MODEL, MAX_CLASSES, UNLABELLED  # noqa: F401 (re-exported)
from ..settings import default_settings
from .records import ImageRecord, ProjectError

FORMAT = "maskclip-project"
FORMAT_VERSION = 1
PROJECT_FILE = "project.json"
IMAGES_FILE = "images.json"
SUMMARY_FILE = "summary.json"
STATE_FILE = "state.json"  # annotations/<id>/state.json
PROJECT_LOCK = ".project.lock"  # held while project.json / images.json are read-modified-written
IMAGE_LOCK = ".lock"  # annotations/<id>/.lock: held while one image's revision is read-merged-committed
INIT_MARKER = ".maskclip-init"  # present while Project.create builds the folder (removed when done)
CREATED_ENTRIES = (IMAGES_FILE, SUMMARY_FILE, "annotations", "cache", "images", PROJECT_LOCK, INIT_MARKER)
DEFAULT_HISTORY = 20  # revisions kept per image besides the current one
MAX_NEW_ID = 200  # a new image id's length: "<id>-N.tiff" and atomic_write's temporaries stay below 255 bytes
ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,239}")  # image ids: one safe file name, no leading dot
REVISION_FILE = re.compile(r"r\d{6,}-[0-9a-f]{8}\.(labels|verified)\.png")

DEFAULT_SETTINGS = default_settings()  # a new project's settings (maskclip.settings: one schema)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# names Windows reserves for devices (with any extension, any case): no file may be called so
RESERVED_NAMES = frozenset(["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
                           + [f"{d}{i}" for d in ("COM", "LPT") for i in (*range(1, 10), "¹", "²", "³")])


def base_id(rel: str) -> str:
    """A file-name-safe id from a relative path without suffix ('a/b c' -> 'a__b_c'). A Windows device name
    (CON, nul, aux.tar, com1, ...) or a leading '-' (read as an option by command lines) gets a '_' in front
    ('CON' -> '_CON'); ids already in a project are read as they are."""
    base = "__".join(_UNSAFE.sub("_", part) for part in rel.split("/"))
    base = base.strip(".") or "image"
    if base.startswith("-") or base.split(".")[0].upper() in RESERVED_NAMES:
        base = "_" + base
    return base


def check_name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ProjectError(f"class name must be a non-empty text, got {name!r}")
    if "," in name:
        raise ProjectError(f"class name {name!r} contains a comma (commas separate synonyms)")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name.strip()):
        raise ProjectError(f"class name {name!r} contains a control character (newline, tab, NUL ...); class "
                           "names must be plain text (one line of VOC labels.txt each)")
    return name.strip()


def check_colour(colour) -> tuple[int, int, int]:
    vals = list(colour) if isinstance(colour, (list, tuple, np.ndarray)) else []
    if len(vals) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= int(v) <= 255 for v in vals):
        raise ProjectError(f"colour must be three integers 0..255 (r, g, b), got {colour!r}")
    return (int(vals[0]), int(vals[1]), int(vals[2]))


def deep_merge(base: dict, update: Mapping) -> dict:
    """Settings update: nested sections are merged key by key, everything else replaced (copies)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def malformed(path: Path, what: str, problem: str) -> ProjectError:
    return ProjectError(f"{path}: malformed {what} ({problem}); restore it from a backup or correct it")


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_revision_file(name) -> bool:
    """Only files with these names are read as revisions or ever deleted from annotations/<id>/."""
    return isinstance(name, str) and REVISION_FILE.fullmatch(name) is not None


def check_image_id(image_id, path: Path) -> str:
    """Ids name files and folders (annotations/<id>/, export files): one plain name, never a path."""
    if not isinstance(image_id, str) or not ID_PATTERN.fullmatch(image_id):
        raise malformed(path, "image list", f"image id {image_id!r} is not a plain file name")
    return image_id


def validate_meta(meta: dict, path: Path) -> dict:
    """project.json: format and version, classes (unique uids and names), next_uid, background, settings."""
    if meta.get("format") != FORMAT:
        raise ProjectError(f"{path} is not a maskclip project file")
    if not is_int(meta.get("version")) or meta["version"] > FORMAT_VERSION:
        raise ProjectError(
            f"{path.parent} was written by a newer maskclip (project format {meta.get('version')}, this version "
            f"reads up to {FORMAT_VERSION}); upgrade maskclip-napari"
        )
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) > MAX_CLASSES:
        raise malformed(path, "project file", f"'classes' must be a list of at most {MAX_CLASSES} classes")
    uids, names = set(), set()
    for i, c in enumerate(classes):
        ok = (isinstance(c, dict) and is_int(c.get("uid")) and c["uid"] >= 0 and isinstance(c.get("name"), str)
              and c["name"].strip() and isinstance(c.get("synonyms", []), list)
              and all(isinstance(n, str) for n in c.get("synonyms", [])))
        if not ok:
            raise malformed(path, "project file", f"class {i} needs a uid (integer), a name and a synonym list")
        try:
            check_colour(c.get("colour"))
        except ProjectError as exc:
            raise malformed(path, "project file", f"class {c['name']!r}: {exc}") from None
        if c["uid"] in uids or c["name"].casefold() in names:
            raise malformed(path, "project file", f"class {c['name']!r} or its uid {c['uid']} appears twice")
        uids.add(c["uid"])
        names.add(c["name"].casefold())
    if not is_int(meta.get("next_uid")) or meta["next_uid"] <= max(uids, default=-1):
        raise malformed(path, "project file", "'next_uid' must be an integer above every class uid")
    if not isinstance(meta.get("background"), list) or not all(isinstance(b, str) for b in meta["background"]):
        raise malformed(path, "project file", "'background' must be a list of prompts")
    if not isinstance(meta.get("settings"), dict):
        raise malformed(path, "project file", "'settings' must be an object")
    problem = settings_problem(meta["settings"])
    if problem:
        raise malformed(path, "project file", problem)
    if meta.get("images_mode") not in ("copy", "reference"):
        raise malformed(path, "project file", "'images_mode' must be 'copy' or 'reference'")
    if not is_int(meta.get("history", DEFAULT_HISTORY)) or meta.get("history", DEFAULT_HISTORY) < 0:
        raise malformed(path, "project file", "'history' must be a non-negative integer")
    return meta


def settings_problem(settings) -> str | None:
    """What is wrong with a project's settings (types and ranges of every field maskclip reads), naming the
    field ('method.scales'), or None. Sections and fields maskclip does not read are left as they are."""
    import dataclasses

    from ..dense_modes import DENSE_MODE_NAMES
    from ..errors import MaskCLIPError
    from ..options import SegmentOptions
    from ..validation import json_value_fits

    if not isinstance(settings, dict):
        return "'settings' must be an object"
    for section in ("model", "method", "learn", "annotator"):
        if section in settings and not isinstance(settings[section], dict):
            return f"setting {section!r} must be an object, got {settings[section]!r}"
    model = settings.get("model", {})
    for key, ok, want in (("name", lambda v: isinstance(v, str) and v.strip(), "a model name"),
                          ("pretrained", lambda v: v is None or isinstance(v, str), "a weights tag, a path or null"),
                          ("dense_mode", lambda v: v in DENSE_MODE_NAMES, f"one of {', '.join(DENSE_MODE_NAMES)}"),
                          ("quick_gelu", lambda v: v is None or isinstance(v, bool), "true, false or null")):
        if key in model and not ok(model[key]):
            return f"setting 'model.{key}' must be {want}, got {model[key]!r}"
    method = settings.get("method", {})
    if "scales" in method:
        scales = method["scales"]
        if not isinstance(scales, list) or not scales or not all(is_int(s) and s > 0 for s in scales):
            return f"setting 'method.scales' must be a list of short-side lengths in pixels, got {scales!r}"
    mode = model.get("dense_mode") if model.get("dense_mode") in DENSE_MODE_NAMES else DENSE_MODE_NAMES[0]
    for field in dataclasses.fields(SegmentOptions):
        if field.name not in method:
            continue
        value = method[field.name]
        if not json_value_fits(str(field.type), value):
            return f"setting 'method.{field.name}' must be of type {field.type}, got {value!r}"
        if value is not None:
            try:
                SegmentOptions.from_mapping({field.name: value}).resolved(mode)
            except (MaskCLIPError, TypeError, ValueError) as exc:
                return f"setting 'method.{field.name}': {exc}"
    learn = settings.get("learn", {})
    if "from_verified" in learn and not isinstance(learn["from_verified"], bool):
        return f"setting 'learn.from_verified' must be true or false, got {learn['from_verified']!r}"
    if "weight" in learn:
        w = learn["weight"]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
            return f"setting 'learn.weight' must be a number in [0, 1], got {w!r}"
    return None


RECORD_FIELDS = {"id": str, "file": str, "source": str, "rel": str, "sha256": str, "size": int, "mtime_ns": int,
                 "height": int, "width": int}


def records_from_json(data: dict, path: Path) -> tuple[list[ImageRecord], list[dict]]:
    """images.json -> (image records, skipped files); ids are plain names, files stay inside the project."""
    images, skipped = data.get("images"), data.get("skipped", [])
    if not isinstance(images, list):
        raise malformed(path, "image list", "'images' must be a list")
    records, seen = [], set()
    plain_id = ID_PATTERN.fullmatch
    for i, r in enumerate(images):  # kept lean: a 10 000-image project opens in tens of milliseconds
        try:
            rec = ImageRecord(**r)
        except TypeError:
            raise malformed(path, "image list", f"image {i} needs the fields {', '.join(RECORD_FIELDS)}") from None
        image_id, file = rec.id, rec.file
        if type(image_id) is not str or not plain_id(image_id):
            check_image_id(image_id, path)  # raises, naming the id
        key = image_id.casefold()
        if key in seen:
            raise malformed(path, "image list", f"image id {image_id!r} appears twice")
        seen.add(key)
        if type(file) is not str or not file or "\x00" in file or (".." in file and file[0] != "/"
                                                 and ".." in file.replace("\\", "/").split("/")):
            raise malformed(path, "image list", f"image {image_id!r} names the file {file!r} outside the project")
        if type(rec.height) is not int or type(rec.width) is not int or rec.height < 1 or rec.width < 1 \
                or type(rec.sha256) is not str:
            raise malformed(path, "image list", f"image {image_id!r} has no valid size or content hash")
        records.append(rec)
    if not isinstance(skipped, list) or not all(isinstance(s, dict) and isinstance(s.get("path"), str)
                                                and isinstance(s.get("reason"), str) for s in skipped):
        raise malformed(path, "image list", "'skipped' must list {path, reason} objects")
    return records, skipped


def check_entry(e, path: Path, what: str) -> None:
    """One revision entry of a state.json: rev, class uids, and revision file names of the project's own."""
    ok = (isinstance(e, dict) and is_int(e.get("rev")) and e["rev"] > 0
          and isinstance(e.get("class_uids", []), list) and all(is_int(u) for u in e.get("class_uids", [])))
    for key, kind in (("labels", "labels"), ("verified", "verified")):
        name = e.get(key) if isinstance(e, dict) else None
        ok = ok and (name is None or (isinstance(name, str) and REVISION_FILE.fullmatch(name) is not None
                                      and name.endswith(f".{kind}.png")))
    if not ok:
        raise ProjectError(f"{path}: malformed label state ({what}); delete that file to start the image's labels "
                           "over (its earlier revisions are lost), or restore it from a backup")


def validate_state(state: dict, path: Path) -> dict:
    """state.json: the current revision, its history and the per-class counts."""
    check_entry(state, path, "current revision")
    history = state.get("history", [])
    if not isinstance(history, list):
        check_entry(None, path, "history")
    for e in history:
        check_entry(e, path, "history")
    for key in ("counts", "verified_counts"):
        counts = state.get(key, {})
        if not isinstance(counts, dict) or not all(is_int(v) for v in counts.values()):
            check_entry(None, path, key)
    return state


def check_labels(labels, rec: ImageRecord, n_classes: int) -> np.ndarray:
    """A caller's labels for an image: its shape, integer class indices below n_classes or 255 -> uint8."""
    labels = np.asarray(labels)
    if labels.shape != (rec.height, rec.width):
        raise ProjectError(f"labels for {rec.id!r} have shape {labels.shape}, image is {(rec.height, rec.width)}")
    if labels.dtype.kind not in "iu":
        raise ProjectError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.size:
        bad = (labels != UNLABELLED) & ((labels < 0) | (labels >= n_classes))
        if bad.any():
            raise ProjectError(
                f"labels for {rec.id!r} contain value {int(labels[bad][0])}; the project has "
                f"{n_classes} classes (0..{n_classes - 1}, 255 = unlabelled)"
            )
    return labels.astype(np.uint8)


def check_mask(mask, rec: ImageRecord) -> np.ndarray:
    """A caller's verified mask for an image: its shape -> bool."""
    mask = np.asarray(mask)
    if mask.shape != (rec.height, rec.width):
        raise ProjectError(f"verified mask for {rec.id!r} has shape {mask.shape}, "
                           f"image is {(rec.height, rec.width)}")
    return mask.astype(bool)
