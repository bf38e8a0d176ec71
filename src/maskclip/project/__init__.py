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
    p.confidence_map(image_id) / p.confidence_scores()   # the latest prediction's confidence (review tools)
    p.class_progress() -> {name: (labelled, verified) pixels}
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
    DIR/annotations/<id>/confidence.png|json   the latest prediction's confidence map (probability x 255)
                                      and its mean over unverified pixels (confidence.py)
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

Package layout (one concern per module; `Project` in store.py delegates to them):

    records.py       errors and record types (ProjectError, ClassInfo, ImageRecord, ImageState, ImportReport)
    schema.py        file names, format constants, defaults, checks of what is read and passed (no I/O)
    files.py         JSON / PNG reads and writes, hashes, file signatures, locks, unfinished-create cleanup
    merge.py         the merge rules as pure numpy functions (the confirmed-background rule stated once)
    revisions.py     commit, prune, history, the summary cache, the caller-held merge bases
    labels.py        reading and saving one image's labels (lock, merge, commit)
    classes.py       class list operations and the rest of project.json (background, settings)
    catalogue.py     image records, adding images, staleness, accept_image_change
    label_import.py  import_labels
    stats.py         list_images, image_state, status, class_pixel_counts, broken_images
    store.py         Project: the facade
"""
from __future__ import annotations

from ..atomic import FileWriteError
from .files import LOCK_TIMEOUT_S, TEMP_AGE_S
from .merge import merge_edit
from .records import (ClassInfo, ImageRecord, ImageState, ImportReport, ProjectBusyError, ProjectError,
                      StaleImageError)
from .revisions import HELD_IMAGES, ORPHAN_AGE_S
from .schema import (DEFAULT_BACKGROUND, DEFAULT_HISTORY, DEFAULT_MODEL, DEFAULT_SETTINGS, FORMAT, FORMAT_VERSION,
                     IMAGE_LOCK, IMAGES_FILE, INIT_MARKER, MAX_CLASSES, PROJECT_FILE, PROJECT_LOCK, SUMMARY_FILE,
                     UNLABELLED)
from .store import Project

__all__ = [
    "Project", "ImageState", "ImageRecord", "ClassInfo", "ImportReport", "ProjectError", "StaleImageError",
    "ProjectBusyError", "FileWriteError", "merge_edit", "UNLABELLED", "DEFAULT_SETTINGS", "DEFAULT_BACKGROUND",
    "DEFAULT_MODEL", "DEFAULT_HISTORY", "MAX_CLASSES", "FORMAT", "FORMAT_VERSION", "PROJECT_FILE", "IMAGES_FILE",
    "SUMMARY_FILE", "PROJECT_LOCK", "IMAGE_LOCK", "INIT_MARKER", "LOCK_TIMEOUT_S", "TEMP_AGE_S", "ORPHAN_AGE_S",
    "HELD_IMAGES",
]
