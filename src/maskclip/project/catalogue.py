"""The image catalogue (images.json): adding images, and staleness: labels belong to the image content they
were made on (sha256), so an image whose file changed on disk is stale until `accept_image_change`.

Functions take the Project `p` (its records); images.json is changed under the project lock, on its latest
content, so two processes adding images get distinct ids and keep both.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ImageReadError
from . import files, revisions
from .records import ImageRecord, ImportReport, ProjectError, StaleImageError
from .schema import FORMAT_VERSION, IMAGES_FILE, MAX_NEW_ID, base_id, records_from_json


def add_images(p, images, recursive: bool) -> ImportReport:
    with p._project_lock():
        reload_images_if_changed(p)  # ids are chosen against the latest list (another process may add)
        snapshot = (list(p._records), dict(p._by_id), list(p._skipped))
        try:
            return _add_images(p, images, recursive)
        except BaseException:  # e.g. disk full: memory keeps matching images.json
            p._records, p._by_id, p._skipped = snapshot
            raise


def _add_images(p, images, recursive: bool) -> ImportReport:
    sources = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    copy_mode = p._meta["images_mode"] == "copy"
    known_sources = {r.source for r in p._records}
    taken = {i.casefold() for i in p._by_id}  # case-insensitive file systems
    added, skipped = [], []
    if copy_mode:
        files.check_own_folder(p.root / "images")
    for src in map(Path, sources):
        if "\x00" in str(src):
            skipped.append((str(src).replace("\x00", "\\x00"), "the file name contains a NUL byte"))
            continue
        not_files: list[tuple[Path, str]] = []
        found = files.list_images(src, recursive=recursive, skipped=not_files)
        skipped.extend((str(f), reason) for f, reason in not_files)
        for f in found:
            rel = f.relative_to(src).with_suffix("").as_posix() if src.is_dir() else f.stem
            source = str(f.resolve())
            if source in known_sources:
                skipped.append((str(f), "already in the project"))
                continue
            base = base_id(rel)
            if len(base) > MAX_NEW_ID:  # its files' names (with suffixes and temporaries) would be too long
                skipped.append((str(f), f"file name too long: its image id would have {len(base)} characters "
                                        f"(at most {MAX_NEW_ID}); rename the file"))
                continue
            try:
                arr = files.read_image(f)
                if arr.ndim < 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
                    raise ImageReadError(f"{f}: image has no pixels (shape {arr.shape})")
                if arr.ndim > 3 or (arr.ndim == 3 and arr.shape[-1] > 4):
                    raise ImageReadError(f"{f}: unsupported image shape {arr.shape}; expected grey, "
                                         "grey+alpha, RGB or RGBA")
            except ImageReadError as exc:
                skipped.append((str(f), str(exc)))
                continue
            image_id, n = base, 1
            while image_id.casefold() in taken:
                n += 1
                image_id = f"{base}-{n}"
            try:  # the resolved source: a regular file, read once more (a FIFO put there since is refused)
                if copy_mode:
                    dest = p.root / "images" / f"{image_id}{f.suffix.lower()}"
                    digest, stored, file = (files.copy_hashed(Path(source), dest), dest,
                                            dest.relative_to(p.root).as_posix())
                else:
                    digest, stored, file = files.sha256_file(Path(source)), Path(source), source
                st = os.stat(stored)
            except OSError as exc:  # reading the source (a failed write is a FileWriteError: it stops the import)
                skipped.append((str(f), f"cannot read the file ({exc.strerror or exc})"))
                continue
            taken.add(image_id.casefold())
            rec = ImageRecord(image_id, file, source, rel, digest, st.st_size, st.st_mtime_ns,
                              int(arr.shape[0]), int(arr.shape[1]))
            p._records.append(rec)
            p._by_id[image_id] = rec
            known_sources.add(source)
            added.append(image_id)
    p._skipped.extend({"path": q, "reason": r} for q, r in skipped if r != "already in the project")
    save_images(p)
    return ImportReport(added, skipped, [], [])


def current_hash(p, rec: ImageRecord) -> str | None:
    """Content hash of the image file now (None when it is gone); re-hashes only when size/mtime moved."""
    path = p.image_path(rec.id)
    try:
        st = os.stat(path)
    except OSError:
        return None
    if st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns:
        return rec.sha256
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in p._hash_cache:
        try:
            p._hash_cache[key] = files.sha256_file(path)
        except OSError:
            return None
    return p._hash_cache[key]


def is_stale(p, image_id: str) -> bool:
    rec = p.record(image_id)
    if current_hash(p, rec) != rec.sha256:
        return True
    state = revisions.state(p, image_id)
    return bool(state) and state.get("image_sha256", rec.sha256) != rec.sha256


def check_not_stale(p, image_id: str) -> None:
    if p.is_stale(image_id):
        raise StaleImageError(
            f"image {image_id!r} ({p.image_path(image_id)}) changed or vanished since it was labelled; its "
            "labels are not applied. Restore the file, or accept the new content "
            "(Project.accept_image_change) to start over"
        )


def accept_image_change(p, image_id: str, keep_labels: bool) -> None:
    rec = p.record(image_id)
    path = p.image_path(image_id)
    try:
        arr = files.read_image(path)
    except ImageReadError as exc:
        raise ProjectError(f"image {image_id!r} cannot be re-read: {exc}") from exc
    st = os.stat(path)
    new = ImageRecord(rec.id, rec.file, rec.source, rec.rel, files.sha256_file(path), st.st_size, st.st_mtime_ns,
                      int(arr.shape[0]), int(arr.shape[1]))
    with p._image_lock(image_id):
        old_state = revisions.state(p, image_id, full=True)
        if keep_labels and old_state.get("labels") and (new.height, new.width) != (rec.height, rec.width):
            raise ProjectError(
                f"image {image_id!r} changed size ({rec.height}x{rec.width} -> {new.height}x{new.width}); "
                "its labels cannot be kept"
            )
        if keep_labels and old_state.get("labels"):
            labels, verified = p._uid_labels(image_id, old_state, (rec.height, rec.width))
        else:
            labels, verified = None, None
        _replace_record(p, new)
        if old_state:
            revisions.commit(p, image_id, labels, verified,
                             "image changed" + (" (labels kept)" if keep_labels else ""), old_state)


def _replace_record(p, rec: ImageRecord) -> None:
    with p._project_lock():
        reload_images_if_changed(p)
        old_records, old_rec = p._records, p._by_id[rec.id]
        p._records = [rec if r.id == rec.id else r for r in p._records]
        p._by_id[rec.id] = rec
        try:
            save_images(p)
        except BaseException:
            p._records, p._by_id[rec.id] = old_records, old_rec
            raise


def reload_images_if_changed(p) -> None:
    """Take images.json as another process left it (call under the project lock)."""
    path = p.root / IMAGES_FILE
    sig = files.file_sig(path)
    if sig is None or sig == p._images_sig:
        return
    p._records, p._skipped = records_from_json(files.read_json(path, "image list"), path)
    p._by_id = {r.id: r for r in p._records}
    p._images_sig = sig


def save_images(p) -> None:
    files.write_json(p.root / IMAGES_FILE, {"version": FORMAT_VERSION,
                                            "images": [r.to_json() for r in p._records],
                                            "skipped": p._skipped})
    p._images_sig = files.file_sig(p.root / IMAGES_FILE)
