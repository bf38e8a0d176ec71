"""How sure the model was on each image: the confidence map of the image's latest prediction that carried one.

`merge_prediction` writes it when the prediction has a confidence (the best class's probability per pixel:
MaskCLIP's from `project segment` and the annotator, the student's from `refine`); the annotator's review tools
read it: *Next least confident* ranks images by `mean_unverified`, the low-confidence overlay shows the map.
It outlives later edits of the labels (it describes the model, not them) and is ignored once the image file
changes. Two files beside the image's revisions, each written atomically under the image's lock:

    annotations/<id>/confidence.png   uint8, probability x 255 (compressed lightly: it is written per prediction)
    annotations/<id>/confidence.json  {"image_sha256", "source", "time", "mean_unverified" (None when every
                                      pixel was verified), "height", "width"}
"""
from __future__ import annotations

import time

import numpy as np
from PIL import Image

from ..atomic import atomic_write
from . import catalogue, files
from .records import ProjectError

MAP_FILE = "confidence.png"
INFO_FILE = "confidence.json"


def write(p, image_id: str, confidence: np.ndarray, verified: np.ndarray, source: str) -> None:
    """Store `confidence` (HxW, 0..1) as the image's latest; the caller holds the image's lock."""
    rec = p.record(image_id)
    conf = np.clip(np.nan_to_num(np.asarray(confidence, np.float32)), 0.0, 1.0)
    open_ = ~np.asarray(verified, bool)
    folder = p._ann_dir(image_id)
    files.mkdir(folder)
    with atomic_write(folder / MAP_FILE, "wb") as f:
        Image.fromarray(np.round(conf * 255).astype(np.uint8)).save(f, format="PNG", compress_level=1)
    mean = float(conf[open_].mean()) if open_.any() else None
    files.write_json(folder / INFO_FILE, {"image_sha256": rec.sha256, "source": source, "time": time.time(),
                                          "mean_unverified": mean, "height": rec.height, "width": rec.width})


def info(p, image_id: str) -> dict | None:
    """The image's confidence record, or None (none stored, unreadable, or made for other file content)."""
    rec = p.record(image_id)
    path = p._ann_dir(image_id) / INFO_FILE
    if not path.is_file():
        return None
    try:
        data = files.read_json(path, "confidence record")
    except ProjectError:
        return None
    if data.get("image_sha256") != rec.sha256 or (data.get("height"), data.get("width")) != (rec.height, rec.width):
        return None
    if catalogue.current_hash(p, rec) != rec.sha256:  # the file changed since: the map is of other content
        return None
    return data


def read_map(p, image_id: str) -> np.ndarray | None:
    """The image's stored confidence map (float32 HxW, 0..1), or None when there is no valid one."""
    if info(p, image_id) is None:
        return None
    rec = p.record(image_id)
    try:
        with Image.open(p._ann_dir(image_id) / MAP_FILE) as im:
            raw = np.asarray(im)
    except (OSError, ValueError):
        return None
    if raw.shape != (rec.height, rec.width):
        return None
    return raw.astype(np.float32) / 255.0


def scores(p) -> dict[str, float]:
    """Image id -> mean confidence over the pixels not verified when it was predicted (images with a valid
    record only; fully verified ones left out)."""
    out = {}
    for image_id in p.image_ids:
        data = info(p, image_id)
        if data is not None and data.get("mean_unverified") is not None:
            out[image_id] = float(data["mean_unverified"])
    return out
