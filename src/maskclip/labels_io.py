"""Label images and class lists on disk, in the PASCAL VOC convention (docs/architecture.md, "Exports").

A label image is single-channel: pixel value = class index (0..254), 255 = unlabelled / ignore. It is
written as an indexed ('P' mode) PNG whose palette only colours the indices for viewers; reading always
returns the indices, never the colours. The class list lives in a JSON file
`{"classes": [names...], "colors": [[r, g, b], ...], "ignore_index": 255}` (the layout of the CamVid and
VOC `classes.json` files in ../shared/data).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import atomic_write
from .defaults import MAX_CLASSES, UNLABELLED
from .errors import ImageReadError, MaskCLIPError
from .images import check_readable_file, is_tiff, open_pil

IGNORE_INDEX = UNLABELLED  # the name importers used before maskclip.defaults
UNLABELLED_COLOR = (224, 224, 192)  # VOC's own colour for index 255 (void): a pale neutral tone


class LabelImageError(ImageReadError):
    """A label file is readable but is not a single-channel class-index image with values 0..255."""


class ClassesFileError(MaskCLIPError):
    """A classes JSON file is missing, malformed or inconsistent."""


def voc_palette(n: int = 256) -> list[tuple[int, int, int]]:
    """The standard PASCAL VOC colour map: bits of the index are interleaved into R, G, B from the top bit."""
    palette = []
    for index in range(n):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append((r, g, b))
    return palette


def _check_colors(colors, what: str) -> list[tuple[int, int, int]]:
    out = []
    for i, col in enumerate(colors):
        vals = list(col) if isinstance(col, (list, tuple, np.ndarray)) else []
        if len(vals) != 3 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255 for v in vals
        ):
            raise MaskCLIPError(f"{what}: colour {i} is {col!r}; expected three integers 0..255 (r, g, b)")
        out.append(tuple(int(v) for v in vals))
    return out


def full_palette(colors: Sequence[Sequence[int]] | None = None) -> list[tuple[int, int, int]]:
    """256 colours: `colors` for the first indices, the VOC palette after them, a neutral tone at 255."""
    given = _check_colors(colors or [], "palette")
    if len(given) > 256:
        raise MaskCLIPError(f"palette has {len(given)} colours; at most 256 are possible")
    palette = given + voc_palette(256)[len(given):]
    palette[IGNORE_INDEX] = UNLABELLED_COLOR
    return palette


def write_index_png(
    path: str | os.PathLike, labels: np.ndarray, palette: Sequence[Sequence[int]] | None = None
) -> None:
    """Write an HxW integer array (class indices 0..254, 255 = unlabelled) as an indexed PNG, atomically."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise MaskCLIPError(f"{path}: labels must be a 2-D HxW array, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise MaskCLIPError(f"{path}: labels must be an integer array of class indices, got dtype {labels.dtype}")
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi > UNLABELLED:
            raise MaskCLIPError(
                f"{path}: label values must be 0..{UNLABELLED} ({UNLABELLED} = unlabelled) for an indexed PNG, "
                f"got values {lo}..{hi}"
            )
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))  # mode 'L'
    im.putpalette([v for rgb in full_palette(palette) for v in rgb])  # 'L' + palette -> 'P'
    with atomic_write(path, "wb") as f:
        im.save(f, format="PNG")


def read_label_image(path: str | os.PathLike) -> np.ndarray:
    """Class indices (np.uint8 HxW) from an indexed/grey PNG (or other Pillow format) or an integer TIFF.

    'P' images give their indices (the palette is ignored), 'L'/'I' images their values; TIFF (as written
    by napari's labels writer, uint32) is accepted when it is 2-D, integer and within 0..255. Colour
    (RGB) label images are refused: colours would have to be mapped to indices first.
    """
    path = Path(path)
    check_readable_file(path)
    if is_tiff(path):
        arr = _read_tiff_labels(path)
    else:
        im = open_pil(path)
        try:
            mode = im.mode
            if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LA", "PA", "HSV", "LAB"):
                raise LabelImageError(
                    f"{path}: label image is a {mode} colour image; expected a single-channel image whose "
                    "pixel values are class indices (indexed 'P' or grey 'L' PNG). Convert colours to "
                    "class indices first"
                )
            arr = np.asarray(im)
        finally:
            im.close()
    return _as_uint8_indices(path, arr)


def _read_tiff_labels(path: Path) -> np.ndarray:
    import tifffile

    try:
        arr = tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types for damaged files
        raise ImageReadError(f"{path}: cannot read TIFF file ({exc})") from exc
    while arr.ndim > 2 and arr.shape[0] == 1:  # napari may save a 2-D layer with a leading singleton axis
        arr = arr[0]
    if arr.ndim != 2:
        raise LabelImageError(f"{path}: label TIFF has shape {arr.shape}; expected a single 2-D HxW plane")
    return arr


def _as_uint8_indices(path: Path, arr: np.ndarray) -> np.ndarray:
    if arr.ndim != 2:
        raise LabelImageError(f"{path}: label image has shape {arr.shape}; expected a single-channel HxW image")
    if arr.dtype == np.uint8:
        return arr.copy()
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    if arr.dtype.kind not in "iu":
        raise LabelImageError(f"{path}: label image has dtype {arr.dtype}; expected integer class indices")
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo < 0 or hi > UNLABELLED:
        raise LabelImageError(
            f"{path}: label values {lo}..{hi} do not fit 0..{UNLABELLED} ({UNLABELLED} = unlabelled); at most "
            f"{MAX_CLASSES} classes "
            "are supported"
        )
    return arr.astype(np.uint8)


def write_classes_json(
    path: str | os.PathLike,
    names: Sequence[str],
    colors: Sequence[Sequence[int]] | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> None:
    """Write the class list (index order) with its colours; colours default to the VOC palette."""
    data = _validated(list(names), None if colors is None else list(colors), ignore_index, str(path))
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def read_classes_json(path: str | os.PathLike) -> dict:
    """{"classes": [str], "colors": [[r, g, b]], "ignore_index": int} from a classes JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClassesFileError(f"{path}: classes file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClassesFileError(f"{path}: cannot read classes file ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClassesFileError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ClassesFileError(f'{path}: expected a JSON object with a "classes" list of names')
    return _validated(data["classes"], data.get("colors"), data.get("ignore_index", IGNORE_INDEX), str(path))


def _validated(names: list, colors: list | None, ignore_index, where: str) -> dict:
    if not names:
        raise ClassesFileError(f"{where}: the class list is empty")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ClassesFileError(f"{where}: class {i} has no name ({name!r})")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise ClassesFileError(f"{where}: class name {name!r} appears twice (indices {seen[name]} and {i})")
        seen[name] = i
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int) or not 0 <= ignore_index <= 255:
        raise ClassesFileError(f"{where}: ignore_index must be an integer 0..255, got {ignore_index!r}")
    if ignore_index < len(names):
        raise ClassesFileError(
            f"{where}: ignore_index {ignore_index} collides with class {ignore_index} ({names[ignore_index]!r})"
        )
    if colors is None:
        rgb = voc_palette(len(names))
    else:
        if len(colors) != len(names):
            raise ClassesFileError(f"{where}: {len(colors)} colours for {len(names)} classes")
        try:
            rgb = _check_colors(colors, where)
        except MaskCLIPError as exc:
            raise ClassesFileError(str(exc)) from None
    return {"classes": list(names), "colors": [list(c) for c in rgb], "ignore_index": ignore_index}
