"""An image's revisions: committing one (PNGs first, then state.json as the commit point), pruning what fell
out of history, reading a revision back as class uids, the history list, and the summary cache of every
image's state (so listing 100 000 images does not read 100 000 state files).

Functions take the Project `p` (its classes, records and caches); the image's lock is the caller's job.
The caller-held copies (the merge base of an editor's next save) are kept here too (`HeldCopies`).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..atomic import remove_temp_files
from ..errors import ImageReadError, MaskCLIPError
from ..labels_io import voc_palette
from . import files, merge
from .records import ProjectError
from .schema import DEFAULT_HISTORY, FORMAT_VERSION, STATE_FILE, SUMMARY_FILE, UNLABELLED, is_revision_file, \
    validate_state

ORPHAN_AGE_S = 600.0  # unreferenced revision files older than this are leftovers of a killed save
HELD_IMAGES = 8  # images whose caller-held copy an instance remembers as the merge base of the next save


class HeldCopies:
    """image id -> (class uids, verified) the caller holds: what it last read or submitted, the merge base of
    its next save. Bounded to HELD_IMAGES images; a dropped one is remembered as forgotten, so its next
    save merges without a base (keeping every pixel verified since)."""

    def __init__(self):
        self._held: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._forgotten: set[str] = set()

    def hold(self, image_id: str, uids: np.ndarray, verified: np.ndarray) -> None:
        self._held[image_id] = (np.array(uids, np.int32), np.array(verified, bool))
        self._held.move_to_end(image_id)
        self._forgotten.discard(image_id)
        while len(self._held) > HELD_IMAGES:
            self._forgotten.add(self._held.popitem(last=False)[0])

    def get(self, image_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        return self._held.get(image_id)

    def forgotten(self, image_id: str) -> bool:
        return image_id in self._forgotten


# --- the summary cache and per-image state -----------------------------------------------------
def state_sig(p, image_id: str) -> list[int] | None:
    try:
        st = os.stat(p._ann_dir(image_id) / STATE_FILE)
    except OSError:
        return None
    return [st.st_ino, st.st_mtime_ns, st.st_size]


def load_summary(p) -> dict:
    if p._summary is None:
        path = p.root / SUMMARY_FILE
        try:
            data = files.read_json(path, "summary cache")
            p._summary = dict(data["states"]) if data.get("version") == FORMAT_VERSION else {}
        except (ProjectError, KeyError, TypeError):
            p._summary = {}
    return p._summary


def state(p, image_id: str, full: bool = False) -> dict:
    """The image's committed state ({} when never labelled), re-read when its file changed.

    The summary cache keeps states without their history (it must stay small for 100 000 images);
    full=True reads state.json itself, history included.
    """
    summary = load_summary(p)
    sig = state_sig(p, image_id)
    cached = summary.get(image_id)
    if sig is None:
        if cached is not None:
            del summary[image_id]
            p._summary_dirty = True
        return {}
    if not full and cached is not None and cached.get("sig") == sig:
        return cached["state"]
    path = p._ann_dir(image_id) / STATE_FILE
    st = validate_state(files.read_json(path, "label state"), path)
    cache_state(p, image_id, sig, st)
    return st


def cache_state(p, image_id: str, sig: list[int] | None, st: dict) -> None:
    compact = {k: v for k, v in st.items() if k != "history"}
    summary = load_summary(p)
    if summary.get(image_id) != {"sig": sig, "state": compact}:
        summary[image_id] = {"sig": sig, "state": compact}
        p._summary_dirty = True


def all_states(p) -> dict[str, dict]:
    """Every image's state; one whose state.json is damaged counts as unlabelled and is listed in
    p._state_errors (status reports it) instead of stopping the whole listing."""
    states = {}
    p._state_errors = {}
    for rec in p._records:
        try:
            states[rec.id] = state(p, rec.id)
        except ProjectError as exc:
            p._state_errors[rec.id] = str(exc)
    flush(p)
    return {k: v for k, v in states.items() if v}


def flush(p) -> None:
    """Write the summary cache if it changed (labels themselves are always already on disk)."""
    if p._summary is not None and p._summary_dirty:
        try:
            files.write_json(p.root / SUMMARY_FILE, {"version": FORMAT_VERSION, "states": p._summary})
            p._summary_dirty = False
        except MaskCLIPError:
            pass  # only a cache: a read-only project still works, just slower to summarise


# --- reading revisions -------------------------------------------------------------------------
def revision_file(p, image_id: str, entry: dict, key: str) -> Path:
    name = entry[key]
    if not is_revision_file(name):  # e.g. a hand-edited summary.json
        raise ProjectError(f"image {image_id!r}: its label state names the file {name!r}, which is not one of "
                           "the project's revision files; delete summary.json and try again")
    return p._ann_dir(image_id) / name


def uid_labels(p, image_id: str, entry: dict, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Labels of a state/history entry as class uids (int32 HxW, -1 = unlabelled) and its verified mask.

    Merges work in uids, not indices, so classes another process added after this instance read
    project.json (uids >= its next_uid) keep their pixels through a merge; classes this instance knows
    were removed read as unlabelled (merge.decode)."""
    if not entry or not entry.get("labels"):
        return np.full(shape, -1, np.int32), np.zeros(shape, bool)
    path = revision_file(p, image_id, entry, "labels")
    try:
        raw = files.read_label_image(path)
    except ImageReadError as exc:
        raise ProjectError(f"labels of image {image_id!r} are unreadable: {exc}. Restore an earlier revision "
                           "(Project.restore_revision) or clear the image's labels") from exc
    if raw.shape != shape:
        raise ProjectError(f"labels of image {image_id!r} have shape {raw.shape}, image is {shape}")
    stored_v = files.read_mask_png(revision_file(p, image_id, entry, "verified"), shape) \
        if entry.get("verified") else None
    return merge.decode(raw, stored_v, entry.get("class_uids", []), p._uid_to_index, int(p._meta["next_uid"]))


def history(p, image_id: str) -> list[dict]:
    """Revisions, oldest first: {"rev", "source", "time", "current"}."""
    st = state(p, image_id, full=True)
    if not st:
        return []
    entries = st.get("history", []) + [st]
    return [{"rev": e["rev"], "source": e.get("source", ""), "time": e.get("time", 0.0),
             "current": e is st} for e in entries]


def find_revision(p, image_id: str, rev: int) -> dict:
    st = state(p, image_id, full=True)
    for e in st.get("history", []) + ([st] if st else []):
        if e["rev"] == rev:
            return e
    raise ProjectError(f"image {image_id!r} has no revision {rev} (kept: "
                       f"{[h['rev'] for h in history(p, image_id)]})")


# --- committing --------------------------------------------------------------------------------
def commit(p, image_id: str, labels: np.ndarray | None, verified: np.ndarray | None, source: str,
           old: dict) -> np.ndarray | None:
    """Write a new revision: its PNGs under fresh names, then state.json (the atomic commit point).

    Call under the image's lock with `old`, its latest full state read under that lock. labels are
    class uids (-1 = unlabelled). Returns the stored labels in current class indices.
    """
    rec = p.record(image_id)
    folder = p._ann_dir(image_id)
    rev = int(old.get("rev", 0)) + 1
    stem = f"r{rev:06d}-{secrets.token_hex(4)}"
    ours = [c.uid for c in p._classes]
    entry: dict = {"rev": rev, "source": source, "time": time.time(), "labels": None, "verified": None,
                   "class_uids": ours}
    written: list[Path] = []
    counts: dict[str, int] = {}
    verified_counts: dict[str, int] = {}
    stored = None
    verified_background = 0
    try:
        if labels is not None:
            labels, raw, verified, class_uids = merge.encode(labels, verified, ours)
            palette = p.class_colours + voc_palette(len(class_uids))[len(ours):]
            path = folder / f"{stem}.labels.png"
            files.write_index_png(path, raw, palette=palette)
            written.append(path)
            entry.update(labels=path.name, class_uids=class_uids)
            if verified.any():
                path = folder / f"{stem}.verified.png"
                files.write_mask_png(path, verified)
                written.append(path)
                entry["verified"] = path.name
            n = np.bincount(raw.ravel(), minlength=256)
            nv = np.bincount(raw[verified].ravel(), minlength=256)
            for i, uid in enumerate(class_uids):
                if n[i]:
                    counts[str(uid)] = int(n[i])
                if nv[i]:
                    verified_counts[str(uid)] = int(nv[i])
            stored = merge.indices_of(labels, p._uid_to_index)
            verified_background = int(nv[UNLABELLED])
        hist = list(old.get("history", []))
        if old:
            hist.append({k: old[k] for k in ("rev", "source", "time", "labels", "verified", "class_uids")
                         if k in old})
        limit = int(p._meta.get("history", DEFAULT_HISTORY))
        dropped, hist = hist[:max(0, len(hist) - limit)], hist[max(0, len(hist) - limit):]
        new_state = dict(entry, image_sha256=rec.sha256, counts=counts, verified_counts=verified_counts,
                         verified_background=verified_background, history=hist)
        files.write_json(folder / STATE_FILE, new_state)
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    cache_state(p, image_id, state_sig(p, image_id), new_state)
    if labels is None:  # cleared
        labels, verified = np.full((rec.height, rec.width), -1, np.int32), np.zeros((rec.height, rec.width), bool)
    p._held.hold(image_id, labels, verified)  # the caller holds what was committed (set_labels holds its own)
    prune(folder, new_state, dropped)
    return stored


def prune(folder: Path, st: dict, dropped: list[dict]) -> None:
    """Delete revision files that fell out of history, old leftovers of killed saves, and temporary files
    (every writer of this folder holds its lock, so none is being written now). Nothing else is touched."""
    keep = {st.get("labels"), st.get("verified")}
    for h in st["history"]:
        keep.update((h.get("labels"), h.get("verified")))
    gone = {name for d in dropped for name in (d.get("labels"), d.get("verified")) if name}
    now = time.time()
    for entry in folder.iterdir():
        name = entry.name
        if name in keep or not is_revision_file(name):
            continue
        try:
            if name in gone or now - entry.stat().st_mtime > ORPHAN_AGE_S:
                entry.unlink()
        except OSError:
            pass
    remove_temp_files(folder)
