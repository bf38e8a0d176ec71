"""`Project`: the facade of the store. It holds one project's in-memory state (records, classes, caches,
locks) and serialises calls (a GUI thread and a worker thread may share one instance); the work is done by
the modules named in each method (catalogue, classes, labels, revisions, label_import, stats), which take
the Project as their first argument. Format, layout and rules: the package docstring.
"""
from __future__ import annotations

import copy
import functools
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..atomic import FileWriteError, remove_temp_files
from . import catalogue, confidence as confidence_store, files, label_import, revisions, stats
from . import classes as class_ops, labels as label_ops  # (methods have parameters named classes, labels)
from .records import ClassInfo, ImageRecord, ImageState, ImportReport, ProjectError
from .schema import (DEFAULT_BACKGROUND, DEFAULT_HISTORY, DEFAULT_SETTINGS, FORMAT, FORMAT_VERSION, IMAGES_FILE,
                     INIT_MARKER, PROJECT_FILE, deep_merge, records_from_json, settings_problem,
                     validate_meta)


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
            class_ops.reload_meta_if_changed(self)
            return method(self, *args, **kwargs)
    return wrapper


class Project:
    """An annotation project folder (layout and rules in the `maskclip.project` docstring).

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
        class_ops.load(self, meta)  # _classes, _name_to_index, _uid_to_index
        self._meta_sig = files.file_sig(root / PROJECT_FILE)  # the version of project.json read or written last
        self._images_sig = files.file_sig(root / IMAGES_FILE)
        self._held = revisions.HeldCopies()  # what the caller holds per image: the merge base of its next save
        self._locks = files.ProjectLocks(root)
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
        root = Path(root)
        if (root / PROJECT_FILE).exists():
            raise ProjectError(f"{root} is already a project (it has {PROJECT_FILE}); open it instead")
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root} exists and is not a folder")
        made_root = not root.exists()
        problem = settings_problem(deep_merge(DEFAULT_SETTINGS, settings or {}))
        if problem:
            raise ProjectError(f"the new project's settings: {problem}")
        if (root / INIT_MARKER).exists():
            files.remove_unfinished(root)  # an earlier create failed part-way (disk full, killed): start over
        elif root.is_dir() and any(p for p in root.iterdir() if not p.name.startswith(".")):
            raise ProjectError(f"{root} is not empty; choose a new or empty folder for the project")
        files.mkdir(root)
        try:
            try:
                (root / INIT_MARKER).touch()
            except OSError as exc:
                raise FileWriteError(f"cannot write in {root}: {exc.strerror or exc}") from exc
            meta = {
                "format": FORMAT, "version": FORMAT_VERSION, "created": time.time(), "next_uid": 0,
                "classes": [], "background": list(DEFAULT_BACKGROUND if background is None else background),
                "settings": deep_merge(DEFAULT_SETTINGS, settings or {}),
                "images_mode": "copy" if copy else "reference", "history": int(history),
            }
            project = cls(root, meta, [], [])
            project._set_classes_no_save(classes)
            files.mkdir(root / "annotations")
            files.mkdir(root / "cache")
            if copy:
                files.mkdir(root / "images")
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
                files.remove_unfinished(root)
            raise
        return project

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Project":
        """Open an existing project. Lazy: reads project.json and images.json only (no image, no label).

        Both files are checked (a damaged or hand-edited file is an error naming it, and an image id or
        file that would lead outside the project is refused), and so are the project's folders (a symbolic
        link for annotations/, images/ or cache/ is refused). Temporary files left by killed saves in the
        project folder are removed.
        """
        root = Path(root)
        if not (root / PROJECT_FILE).exists() and (root / INIT_MARKER).exists():
            raise ProjectError(f"{root}: creating this project did not finish (e.g. the disk was full or the "
                               "process was killed); run `maskclip project init` on it again, which cleans up")
        meta = validate_meta(files.read_json(root / PROJECT_FILE, "project file"), root / PROJECT_FILE)
        files.check_subfolders(root)
        records, skipped = records_from_json(files.read_json(root / IMAGES_FILE, "image list"), root / IMAGES_FILE)
        remove_temp_files(root, files.TEMP_AGE_S)
        return cls(root, meta, records, skipped)

    # --- images (catalogue.py) ------------------------------------------------------------------
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
        return files.read_image(self.image_path(image_id))

    @_locked
    def add_images(self, images: str | os.PathLike | Iterable[str | os.PathLike], *,
                   recursive: bool = False) -> ImportReport:
        """Import image files/folders (copied or referenced per the project's mode).

        Ids come from the path below the imported folder ('a/x.png' -> 'a__x'), made unique with a
        '-2', '-3' suffix, so equal names from different folders never collide. Unreadable files are
        skipped and recorded with the reason; a file already imported (same source path) is skipped.
        """
        return catalogue.add_images(self, images, recursive)

    @_locked
    def is_stale(self, image_id: str) -> bool:
        """True when the image file changed or vanished since its labels were made."""
        return catalogue.is_stale(self, image_id)

    @_locked
    def accept_image_change(self, image_id: str, keep_labels: bool = False) -> None:
        """Take the image's new content as the project's: its labels are cleared (kept in history) or,
        with keep_labels=True and an unchanged size, kept for the new content (an image without labels is
        accepted at any size)."""
        catalogue.accept_image_change(self, image_id, keep_labels)

    # --- classes (classes.py) -------------------------------------------------------------------
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
        return class_ops.add_class(self, name, synonyms, colour)

    @_meta_op
    def remove_class(self, name: str) -> None:
        """Remove a class: its stored pixels read as 255 (unlabelled) and lose their verified flag."""
        class_ops.remove_class(self, name)

    @_meta_op
    def rename_class(self, old: str, new: str) -> None:
        """Rename; the uid, colour, synonyms and every stored label stay with the class."""
        class_ops.rename_class(self, old, new)

    @_meta_op
    def reorder_classes(self, names: Sequence[str]) -> None:
        """Put the classes in this order (a permutation of class_names); labels follow their class."""
        class_ops.reorder_classes(self, names)

    @_meta_op
    def set_class_synonyms(self, name: str, synonyms: Sequence[str]) -> None:
        class_ops.set_class_synonyms(self, name, synonyms)

    @_meta_op
    def set_class_colour(self, name: str, colour: Sequence[int]) -> None:
        class_ops.set_class_colour(self, name, colour)

    @_meta_op
    def set_classes(self, classes: Sequence[str | Sequence[str] | Mapping]) -> None:
        """Replace the class list. Items: "name", ["name", "synonym", ...] or {name, synonyms, colour}.
        A name already in the project keeps its uid (so its labels); classes not listed are removed."""
        class_ops.set_classes(self, classes)

    # --- background prompts and settings (classes.py: the rest of project.json) ------------------
    @property
    def background(self) -> list[str]:
        """Background prompts merged into one 'background' label by MaskCLIP.segment."""
        return list(self._meta["background"])

    @_meta_op
    def set_background(self, prompts: Sequence[str]) -> None:
        class_ops.set_background(self, prompts)

    @property
    def settings(self) -> dict:
        """Model and method settings (a copy): {"model": {...}, "method": {...}, other sections...}."""
        return copy.deepcopy(self._meta["settings"])

    @_meta_op
    def update_settings(self, update: Mapping) -> None:
        """Deep-merge `update` into the settings and save (e.g. {"method": {"key_smoothing": False}})."""
        class_ops.update_settings(self, update)

    # --- labels (labels.py; merge rules in merge.py) --------------------------------------------
    @_locked
    def has_labels(self, image_id: str) -> bool:
        return bool(revisions.state(self, image_id).get("labels"))

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
        return label_ops.get_labels_and_verified(self, image_id, allow_stale)

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
        return label_ops.set_labels(self, image_id, labels, verified, mark_changed_verified, source, base)

    @_locked
    def set_verified(self, image_id: str, mask: np.ndarray, *, source: str = "verify",
                     base: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Replace the verified mask (verified unlabelled pixels are confirmed background); merged like
        set_labels: only the flags the caller changed relative to the copy it holds are taken."""
        label_ops.set_verified(self, image_id, mask, source, base)

    def project_labels(self, labels: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
        """Labels whose value i means class_names[i] (a Segmentation's) as project class indices; names the
        project lacks (background prompts) become 255."""
        return label_ops.project_labels(self, labels, class_names)

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
        return label_ops.merge_prediction(self, image_id, labels, confidence, class_names, min_confidence, source)

    @_locked
    def import_labels(self, source: str | os.PathLike, *, verified: bool = False, format: str = "auto") -> ImportReport:
        """Import label images named like the project's images (see maskclip.export.open_labels).

        A label file matches an image by id, by its path below the imported image folder, or by file stem
        when that stem is unique in the project. When the source names its classes (classes.json, VOC
        labels.txt, COCO categories) values are mapped by class name and missing classes are added;
        otherwise values are project class indices. verified=True stores them as a person's labels
        (every labelled pixel verified); otherwise they merge like a prediction (verified pixels kept).
        """
        return label_import.import_labels(self, source, verified, format)

    @_locked
    def clear_labels(self, image_id: str) -> None:
        """Drop the labels and verified mask (the previous revision stays in history)."""
        label_ops.clear_labels(self, image_id)

    # --- revisions (revisions.py) ---------------------------------------------------------------
    @_locked
    def history(self, image_id: str) -> list[dict]:
        """Revisions, oldest first: {"rev", "source", "time", "current"}."""
        return revisions.history(self, image_id)

    @_locked
    def get_revision(self, image_id: str, rev: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels and verified mask of an earlier revision (in current class indices)."""
        return label_ops.get_revision(self, image_id, rev)

    @_locked
    def restore_revision(self, image_id: str, rev: int) -> None:
        """Undo: make an earlier revision current again (labels and verified mask), as a new revision."""
        label_ops.restore_revision(self, image_id, rev)

    # --- the model's confidence (confidence.py) --------------------------------------------------
    @_locked
    def confidence_map(self, image_id: str) -> np.ndarray | None:
        """The confidence map (float32 HxW, 0..1) of the image's latest prediction that carried one, or None."""
        return confidence_store.read_map(self, image_id)

    @_locked
    def confidence_scores(self) -> dict[str, float]:
        """Image id -> mean confidence of its latest prediction over the pixels not verified then."""
        return confidence_store.scores(self)

    # --- statistics (stats.py) ------------------------------------------------------------------
    @_locked
    def list_images(self) -> list[ImageState]:
        """State of every image, in project order. Costs one stat per image and label state (cached)."""
        return stats.list_images(self)

    @_locked
    def image_state(self, image_id: str) -> ImageState:
        return stats.image_state(self, image_id)

    @_locked
    def class_pixel_counts(self, verified_only: bool = False) -> dict[str, int]:
        """Pixels per class over the project's images (stale images excluded)."""
        return stats.class_pixel_counts(self, verified_only)

    @_locked
    def class_progress(self, images: list[ImageState] | None = None) -> dict[str, tuple[int, int]]:
        """Class name -> (labelled, verified) pixels over the non-stale images (`images`: a fresh
        list_images(), to save reading it again)."""
        labelled, verified = stats.class_totals(self, self.list_images() if images is None else images)
        return {name: (int(n), int(v)) for name, n, v in zip(self.class_names, labelled, verified)}

    @_locked
    def status(self) -> dict:
        """Summary for `maskclip project status` and the annotator."""
        return stats.status(self)

    @_locked
    def broken_images(self) -> list[dict]:
        """Images whose label state or current label files are damaged or missing: [{"id", "problem"}].

        Checks without decoding (each file's PNG signature and end marker), so it is cheap enough for
        `project status`; such images are skipped by segment, refine, train and export."""
        return stats.broken_images(self)

    @_locked
    def flush(self) -> None:
        """Write the summary cache if it changed (labels themselves are always already on disk)."""
        revisions.flush(self)

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()

    # --- internals shared by the modules --------------------------------------------------------
    def _ann_dir(self, image_id: str) -> Path:
        return self.root / "annotations" / image_id

    def _class_uids(self) -> list[int]:
        return [c.uid for c in self._classes]

    def _uid_labels(self, image_id: str, entry: dict, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """A stored revision as (class uids, verified): every read of a revision goes through here."""
        return revisions.uid_labels(self, image_id, entry, shape)

    def _project_lock(self):
        """Inter-process lock for project.json and images.json updates (read-modify-write)."""
        return self._locks.project()

    def _image_lock(self, image_id: str):
        """Inter-process lock for one image's revisions: every commit reads the latest state under it."""
        return self._locks.image(image_id, self._ann_dir(image_id))

    def _set_classes_no_save(self, spec) -> None:
        class_ops.set_classes_no_save(self, spec)

    def _save_meta(self) -> None:
        class_ops.save_meta(self)

    def _save_images(self) -> None:
        catalogue.save_images(self)

