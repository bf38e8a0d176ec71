"""Importing label images (a label folder, or a VOC / COCO / index export of maskclip.export) into a project:
matching label files to images, mapping their class names to the project's, and merging them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MaskCLIPError
from . import merge, revisions
from .records import ImportReport, ProjectError, StaleImageError
from .schema import UNLABELLED, check_labels


def import_labels(p, source, verified: bool, format: str) -> ImportReport:
    from ..export import open_labels

    labelset = open_labels(source, format)
    new_classes: list[str] = []
    lut = None
    if labelset.class_names is not None:
        for i, name in enumerate(labelset.class_names):
            if name not in p._name_to_index:
                colour = labelset.colours[i] if labelset.colours else None
                used = {c.colour for c in p._classes}
                p.add_class(name, colour=colour if colour not in used else None)
                new_classes.append(name)
        lut = np.full(256, UNLABELLED, np.uint8)
        for i, name in enumerate(labelset.class_names):
            lut[i] = p._name_to_index[name]
    stems: dict[str, list[str]] = {}
    for rec in p._records:
        stems.setdefault(Path(rec.rel).name, []).append(rec.id)
    added, skipped, missing = [], [], []
    for rec in p._records:
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
            if p.is_stale(rec.id):
                raise StaleImageError("the image changed since import (stale)")
            if verified:
                labels = check_labels(raw, rec, len(p._classes))
                with p._image_lock(rec.id):
                    revisions.commit(p, rec.id, merge.uids_of(labels, p._class_uids()), labels != UNLABELLED,
                                     "import (verified)", revisions.state(p, rec.id, full=True))
            else:
                p.merge_prediction(rec.id, raw, source="import")
        except MaskCLIPError as exc:
            skipped.append((rec.id, str(exc)))
            continue
        added.append(rec.id)
    p.flush()
    return ImportReport(added, skipped, missing, new_classes)
