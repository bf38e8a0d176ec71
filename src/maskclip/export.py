"""Dataset export of a project's labels, and the matching readers (export -> import round-trips exactly).

Formats (docs/architecture.md, "Exports"; file stems are the project's image ids):
- voc:   OUT/JPEGImages/<id>.jpg, OUT/SegmentationClass/<id>.png (indexed PNG: value = project class
         index, 255 = unlabelled, standard VOC palette), OUT/ImageSets/Segmentation/{train,val,trainval}.txt
         (a stable split by a hash of the id), OUT/labels.txt (one class per line) and OUT/classes.json.
- coco:  OUT/annotations.json ("stuff" style: per image and class present one RLE mask, column-major,
         pycocotools encoding with `counts` as str; category id = class index + 1) and OUT/images/.
- index: OUT/<id>.png (indexed PNG, project colours) and OUT/classes.json.

Only labelled images are written (with verified_only: only verified pixels, other pixels 255, and only
images with some verified pixel). Stale images (file changed since labelling) are skipped and reported.

`open_labels(path)` reads any of these back, or a plain folder of label images (PNG/TIFF named like the
images, values = class indices), as a `LabelSet` that `Project.import_labels` consumes.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .atomic import atomic_write
from .defaults import MAX_CLASSES, UNLABELLED
from .errors import ImageReadError, MaskCLIPError
from .images import read_image, to_rgb_float
from .labels_io import read_classes_json, read_label_image, voc_palette, write_classes_json, write_index_png

FORMATS = ("voc", "coco", "index")
LABEL_EXTENSIONS = (".png", ".tif", ".tiff")
_JPEG = (".jpg", ".jpeg")
_EXIF_ORIENTATION = 0x0112


class ExportError(MaskCLIPError):
    """An export or a label set to import is invalid (message says what to fix)."""


@dataclass
class ExportReport:
    format: str
    out: Path
    exported: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image id, reason)
    splits: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class LabelSet:
    """Label images found at a path: class names when the source names them, and a reader per key.

    Keys are paths relative to the label root without suffix ('a/x' for 'a/x.png'); export writes ids.
    """

    format: str
    root: Path
    class_names: list[str] | None
    colours: list[tuple[int, int, int]] | None
    _readers: dict[str, Callable[[], np.ndarray]]

    @property
    def keys(self) -> list[str]:
        return sorted(self._readers)

    def __contains__(self, key: str) -> bool:
        return key in self._readers

    def read(self, key: str) -> np.ndarray:
        """uint8 HxW class indices (in this set's class order), 255 = unlabelled."""
        return self._readers[key]()


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------
def export_project(project, out: str | os.PathLike, format: str, *, verified_only: bool = False,
                   images: bool = True, val_fraction: float = 0.1, overwrite: bool = False) -> ExportReport:
    """Write the project's labels as a dataset in `format` ('voc', 'coco' or 'index') under `out`.

    `out` must be absent or empty unless overwrite=True (then files are replaced, none deleted).
    images=False leaves the images out (coco/voc). val_fraction sets the VOC val split share (a non-zero
    share of two or more images puts at least one in val).
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if not 0.0 <= val_fraction <= 1.0:
        raise ExportError(f"val_fraction must lie in [0, 1], got {val_fraction}")
    out = Path(out)
    _check_export_folder(project, out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} is not empty; choose a new folder (or pass overwrite=True / --overwrite)")
    report = ExportReport(format, out)
    items = _labelled_items(project, verified_only, report)
    if format == "voc":
        _export_voc(project, out, items, report, images, val_fraction)
    elif format == "coco":
        _export_coco(project, out, items, report, images)
    else:
        _export_index(project, out, items, report)
    return report


def _check_export_folder(project, out: Path) -> None:
    """Never export into the project folder (its images and labels) or a folder holding its images."""
    from .outputs import UnsafeOutputError, check_output_folder

    try:
        check_output_folder(out, [project.root, *(project.image_path(i) for i in project.image_ids)],
                            option="export folder")
    except UnsafeOutputError as exc:
        raise ExportError(str(exc)) from None


def _labelled_items(project, verified_only: bool, report: ExportReport):
    """(image id, labels) for every exportable image, read lazily one at a time."""
    states = {s.id: s for s in project.list_images()}
    broken = {b["id"]: b["problem"] for b in project.broken_images()}
    for image_id in project.image_ids:
        state = states[image_id]
        if image_id in broken:
            report.skipped.append((image_id, broken[image_id]))
            continue
        if state.stale:
            report.skipped.append((image_id, "image file changed since it was labelled (stale)"))
            continue
        if state.labelled_pixels == 0 or (verified_only and state.verified_pixels == 0):
            continue
        if Path(image_id).name != image_id or image_id.startswith("."):  # Project.open refuses these; be sure
            report.skipped.append((image_id, "the image id is not a plain file name"))
            continue
        try:
            labels, verified = project.get_labels_and_verified(image_id)
        except MaskCLIPError as exc:  # a damaged label file: report it, export the others
            report.skipped.append((image_id, str(exc)))
            continue
        if verified_only:
            labels = np.where(verified, labels, UNLABELLED).astype(np.uint8)
        report.exported.append(image_id)
        yield image_id, labels


def _mkdirs(*folders: Path) -> None:
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"cannot create folder {folder}: {exc.strerror or exc}") from exc


def _copy_file(src: Path, dest: Path) -> None:
    with open(src, "rb") as fin, atomic_write(dest, "wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            fout.write(chunk)


def _exif_rotated(path: Path) -> bool:
    """True when viewers rotate the stored pixels (labels follow the rotated view, see images.read_image)."""
    try:
        with Image.open(path) as im:
            return im.getexif().get(_EXIF_ORIENTATION, 1) not in (1, None)
    except (OSError, ValueError):
        return False


def _write_image(project, image_id: str, folder: Path, jpeg: bool) -> str:
    """Put the image next to its labels: the original bytes when usable as is, else re-encoded.

    jpeg=True (VOC) needs a .jpg; other pixel types become 8-bit RGB JPEG (quality 95). Without it the
    file is copied, or written as PNG when EXIF rotation would make the pixels disagree with the labels.
    """
    src = project.image_path(image_id)
    suffix = src.suffix.lower()
    if not _exif_rotated(src) and (suffix in _JPEG or not jpeg):
        name = f"{image_id}.jpg" if jpeg else f"{image_id}{suffix}"
        _copy_file(src, folder / name)
        return name
    arr = read_image(src)
    if jpeg or arr.dtype != np.uint8:
        arr = np.round(to_rgb_float(arr) * 255).astype(np.uint8)
    name = f"{image_id}.jpg" if jpeg else f"{image_id}.png"
    with atomic_write(folder / name, "wb") as f:
        Image.fromarray(arr).save(f, format="JPEG" if jpeg else "PNG", **({"quality": 95} if jpeg else {}))
    return name


def _split_key(image_id: str) -> int:
    return int(hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:8], 16) % 10000


def _image_written(project, image_id: str, folder: Path, jpeg: bool, report: ExportReport) -> str | None:
    """_write_image, or None after reporting an image that cannot be read (its labels are not exported)."""
    try:
        return _write_image(project, image_id, folder, jpeg)
    except (ImageReadError, OSError) as exc:
        report.exported.remove(image_id)
        report.skipped.append((image_id, f"image unreadable: {exc}"))
        return None


def _is_val(image_id: str, val_fraction: float) -> bool:
    """Stable split: depends on the id only, so adding images never moves old ones between splits."""
    return _split_key(image_id) < round(val_fraction * 10000)


def _write_lines(path: Path, lines: list[str]) -> None:
    with atomic_write(path, "w") as f:
        f.write("".join(f"{line}\n" for line in lines))


def _export_voc(project, out, items, report, images: bool, val_fraction: float) -> None:
    seg_dir, jpg_dir, sets_dir = out / "SegmentationClass", out / "JPEGImages", out / "ImageSets" / "Segmentation"
    _mkdirs(seg_dir, sets_dir, *([jpg_dir] if images else []))
    palette = voc_palette(len(project.class_names))
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for image_id, labels in items:
        if images and not _image_written(project, image_id, jpg_dir, True, report):
            continue
        write_index_png(seg_dir / f"{image_id}.png", labels, palette=palette)
        splits["val" if _is_val(image_id, val_fraction) else "train"].append(image_id)
    if val_fraction > 0 and not splits["val"] and len(splits["train"]) >= 2:
        # a small export would get an empty val split: the image with the lowest key is the one
        first = min(splits["train"], key=_split_key)
        splits["train"].remove(first)
        splits["val"].append(first)
    splits["trainval"] = sorted(splits["train"] + splits["val"])
    for name, ids in splits.items():
        _write_lines(sets_dir / f"{name}.txt", ids)
    _write_lines(out / "labels.txt", project.class_names)
    _write_classes(out / "classes.json", project.class_names, palette)
    report.splits = splits


def _write_classes(path: Path, names: list[str], colours) -> None:
    if names:
        write_classes_json(path, names, colours)
    else:  # a project without classes still exports (all pixels unlabelled)
        with atomic_write(path, "w") as f:
            json.dump({"classes": [], "colors": [], "ignore_index": UNLABELLED}, f)


def _export_index(project, out, items, report) -> None:
    _mkdirs(out)
    for image_id, labels in items:
        write_index_png(out / f"{image_id}.png", labels, palette=project.class_colours)
    _write_classes(out / "classes.json", project.class_names, project.class_colours)


def coco_mask_api():
    """pycocotools' mask module (RLE encoding), an optional dependency: the `coco` extra."""
    try:
        from pycocotools import mask
    except ImportError:
        raise MaskCLIPError('COCO export and import need pycocotools: pip install "maskclip-napari[coco]" '
                            '(or pip install pycocotools); VOC and index exports work without it') from None
    return mask


def _export_coco(project, out, items, report, images: bool) -> None:
    mask_util = coco_mask_api()

    img_dir = out / "images"
    _mkdirs(out, *([img_dir] if images else []))
    coco = {
        "info": {"description": f"maskclip-napari export of {project.root.name}", "ignore_index": UNLABELLED},
        "images": [], "annotations": [],
        "categories": [{"id": i + 1, "name": c.name, "supercategory": "", "color": list(c.colour)}
                       for i, c in enumerate(project.classes)],
    }
    n = 0
    for image_id, labels in items:
        suffix = project.image_path(image_id).suffix.lower()
        name = _image_written(project, image_id, img_dir, False, report) if images else f"{image_id}{suffix}"
        if not name:
            continue
        n += 1
        height, width = labels.shape
        coco["images"].append({"id": n, "file_name": name, "height": height, "width": width})
        for k in np.unique(labels):
            if k == UNLABELLED:
                continue
            rle = mask_util.encode(np.asfortranarray(labels == k, dtype=np.uint8))
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": n, "category_id": int(k) + 1,
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                "area": int(mask_util.area([rle])[0]), "bbox": [float(v) for v in mask_util.toBbox([rle])[0]],
                "iscrowd": 0,
            })
    with atomic_write(out / "annotations.json", "w") as f:
        json.dump(coco, f)


# --------------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------------
def open_labels(path: str | os.PathLike, format: str = "auto") -> LabelSet:
    """Label images at `path`: a COCO json file, a VOC or index export, or a folder of label images.

    format 'auto' decides by what is there: a .json file -> coco; a folder with SegmentationClass/ -> voc;
    a folder with annotations.json -> coco; otherwise a folder of label images ('index'/'folder'), whose
    classes.json, when present, names the classes.
    """
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such file or folder")
    if format == "auto":
        if path.is_file() and path.suffix.lower() != ".json":
            raise ExportError(f"{path} is a single file but not a COCO annotations .json; give the folder that "
                              "holds the label images (named like the project's images)")
        if path.is_file():
            format = "coco"
        elif (path / "SegmentationClass").is_dir():
            format = "voc"
        elif (path / "annotations.json").is_file():
            format = "coco"
        else:
            format = "index"
    if format == "coco":
        return _open_coco(path / "annotations.json" if path.is_dir() else path)
    if format == "voc":
        names, colours = _read_names(path / "classes.json", path / "labels.txt")
        return _open_folder(path / "SegmentationClass", "voc", names, colours)
    if format in ("index", "folder"):
        names, colours = _read_names(path / "classes.json", None)
        return _open_folder(path, format, names, colours)
    raise ExportError(f"unknown label format {format!r}; choose auto, voc, coco or index")


def _read_names(classes_json: Path, labels_txt: Path | None):
    if classes_json.is_file():
        data = read_classes_json(classes_json)
        return data["classes"], [tuple(c) for c in data["colors"]]
    if labels_txt is not None and labels_txt.is_file():
        names = [line.strip() for line in labels_txt.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        return names, None
    return None, None


def _open_folder(root: Path, format: str, names, colours) -> LabelSet:
    if not root.is_dir():
        raise ExportError(f"{root}: not a folder of label images")
    readers = {}
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.suffix.lower() in LABEL_EXTENSIONS and not f.name.startswith("."):
            key = f.relative_to(root).with_suffix("").as_posix()
            if key in readers:
                raise ExportError(f"{root}: two label files for {key!r} (e.g. .png and .tif); keep one")
            readers[key] = (lambda p=f: read_label_image(p))
    return LabelSet(format, root, names, colours, readers)


# COCO input is data from outside: everything pycocotools is given is checked first (huge polygon
# coordinates crash its C code, bad sizes or counts make it read out of bounds or raise obscure errors).
COCO_MAX_SIDE = 1 << 16
COCO_MAX_PIXELS = 1 << 28
_COCO_MARGIN = 1.0  # polygon coordinates may lie this many image sizes outside the image


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _rle_string_counts(counts: str) -> list[int] | None:
    """The run lengths of a compressed COCO RLE string (pycocotools' rleFrString), None if malformed."""
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                return None
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def _coco_size(image: dict) -> tuple[int, int]:
    h, w = image.get("height"), image.get("width")
    if not (_is_int(h) and _is_int(w)) or h <= 0 or w <= 0:
        raise ExportError(f"height {h!r} and width {w!r} must be positive integers")
    if h > COCO_MAX_SIDE or w > COCO_MAX_SIDE or h * w > COCO_MAX_PIXELS:
        raise ExportError(f"size {h}x{w} is too large (at most {COCO_MAX_SIDE} pixels a side and "
                          f"{COCO_MAX_PIXELS} pixels)")
    return int(h), int(w)


def _coco_rle(seg, h: int, w: int, mask_util) -> dict:
    """The annotation's segmentation as a pycocotools RLE, after checking it fits an h x w image."""
    if isinstance(seg, list):  # polygons
        if not seg or not all(isinstance(poly, list) for poly in seg):
            raise ExportError("segmentation must be a non-empty list of polygons (lists of x, y coordinates)")
        for poly in seg:
            if len(poly) < 6 or len(poly) % 2 or not all(_is_number(v) for v in poly):
                raise ExportError("a polygon must list at least 3 points as numbers x1, y1, x2, y2, ...")
            xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
            if not np.isfinite(xy).all():
                raise ExportError("a polygon has a non-finite coordinate")
            bound = np.array([w, h], np.float64)
            if (xy < -_COCO_MARGIN * bound).any() or (xy > (1 + _COCO_MARGIN) * bound).any():
                raise ExportError(f"a polygon has coordinates far outside the {w}x{h} image (e.g. "
                                  f"{xy[np.abs(xy).max(axis=1).argmax()].tolist()})")
        return mask_util.merge(mask_util.frPyObjects(seg, h, w))
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise ExportError(f"segmentation must be a list of polygons or an RLE object with size and counts, "
                          f"got {type(seg).__name__}")
    size = seg["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)) or list(size) != [h, w]:
        raise ExportError(f"RLE size {size!r} does not match the image's height and width [{h}, {w}]")
    counts = seg["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        if not all(_is_int(v) and v >= 0 for v in counts) or sum(counts) != h * w:
            raise ExportError(f"RLE counts must be non-negative integers summing to {h * w} (height x width)")
        return mask_util.frPyObjects(seg, h, w)
    if not isinstance(counts, str):
        raise ExportError(f"RLE counts must be a string or a list of integers, got {type(counts).__name__}")
    runs = _rle_string_counts(counts)
    if runs is None or any(v < 0 for v in runs) or sum(runs) != h * w:
        raise ExportError(f"RLE counts string is malformed or does not cover the {h}x{w} image")
    return {"size": [h, w], "counts": counts.encode("ascii")}


def _open_coco(path: Path) -> LabelSet:
    mask_util = coco_mask_api()

    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
        if not isinstance(data, dict):
            raise TypeError("the file holds no JSON object")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data[key], list) or not all(isinstance(x, dict) for x in data[key]):
                raise TypeError(f"{key!r} must be a list of objects")
        for c in data["categories"]:
            if not _is_int(c["id"]) or not isinstance(c["name"], str):
                raise TypeError(f"category {c!r} needs an integer id and a name")
        for im in data["images"]:
            if not isinstance(im["file_name"], str) or not isinstance(im["id"], (int, str)):
                raise TypeError(f"image {im.get('id')!r} needs an id and a file_name")
        categories = sorted(data["categories"], key=lambda c: c["id"])
        cat_index = {c["id"]: i for i, c in enumerate(categories)}
        if len(cat_index) != len(categories):
            raise ValueError("two categories share an id")
        images = {im["id"]: im for im in data["images"]}
        anns: dict[int, list[dict]] = {i: [] for i in images}
        for a in data["annotations"]:
            if a.get("image_id") not in anns:
                raise ValueError(f"annotation {a.get('id')!r} names image_id {a.get('image_id')!r}, "
                                 "which the file does not list")
            anns[a["image_id"]].append(a)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{path}: not a readable COCO annotation file ({exc})") from exc
    if len(categories) > MAX_CLASSES:
        raise ExportError(f"{path}: {len(categories)} categories; at most {MAX_CLASSES} fit label images")

    def reader(image: dict) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            try:
                h, w = _coco_size(image)
            except ExportError as exc:
                raise ExportError(f"{path}: image {image['file_name']!r}: {exc}") from None
            labels = np.full((h, w), UNLABELLED, np.uint8)
            for a in anns[image["id"]]:  # overlapping masks: the later annotation wins
                try:
                    if not _is_int(a.get("category_id")) or a["category_id"] not in cat_index:
                        raise ExportError(f"category_id {a.get('category_id')!r} is not among the categories")
                    rle = _coco_rle(a.get("segmentation"), h, w, mask_util)
                    mask = mask_util.decode([rle])[:, :, 0].astype(bool)
                except ExportError as exc:
                    raise ExportError(f"{path}: annotation {a.get('id')!r} of image {image['file_name']!r}: "
                                      f"{exc}") from None
                labels[mask] = cat_index[a["category_id"]]
            return labels
        return read

    readers = {Path(im["file_name"]).with_suffix("").as_posix(): reader(im) for im in images.values()}
    colours = [tuple(c["color"]) for c in categories] if all(
        isinstance(c.get("color"), list) and len(c["color"]) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c["color"])
        for c in categories) else None
    return LabelSet("coco", path.parent, [c["name"] for c in categories], colours, readers)
