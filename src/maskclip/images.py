"""Reading image files and turning any supported pixel array into the RGB float image the model needs.

Reading (`read_image`) returns the pixels as stored, so callers can show or save them faithfully:
- PNG, JPEG, BMP, WebP are read with Pillow. The EXIF orientation tag is applied (phones store JPEGs
  sideways and rely on it), so the array matches what an image viewer shows. Palette images are
  expanded to RGB (RGBA when they have transparency), CMYK/YCbCr/HSV/LAB to RGB, 16-bit grey stays
  uint16, 1-bit becomes bool. Animated/multi-frame files give their first frame.
- TIFF is read with tifffile, and only its first page (IFD) is used: for a multi-page file (z-stack,
  time series, ImageJ hyperstack, one page per channel) that is the first plane; samples stored planar
  (S,Y,X) are moved last; a tiled volume page (depth > 1) gives its first slice. The result is HxW or
  HxWxS with the stored dtype.
- A missing, empty, corrupt, truncated or unrecognised file raises `ImageReadError` naming the file.

Conversion (`to_rgb_float`) gives float32 HxWx3 in [0, 1]:
- shape: HxW and HxWx1 are grey and replicated to 3 channels; HxWx2 is grey+alpha and gives the grey;
  HxWx3 is RGB; HxWx4 is RGBA and the alpha channel is dropped (not composited). Any other shape
  (1-D, 4-D, 5+ channels, an empty image) raises `UnsupportedImageError` with the shape.
- values: bool -> 0/1; uint8 / 255; uint16 / 65535; floats already within [0, 1] are kept as is; all
  other integer types and floats outside [0, 1] are min-max normalised over the whole image (a constant
  image gives zeros). NaN and +-inf are ignored when finding the range and become 0.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageReadError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


class UnsupportedImageError(ImageReadError):
    """The pixel array has a shape or dtype that cannot be turned into an RGB image."""


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(paths: str | os.PathLike | Iterable[str | os.PathLike], recursive: bool = False,
                skipped: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Image files named by `paths` (files and/or folders), sorted and without duplicates.

    Folders contribute their image files (sub-folders too when `recursive`); hidden files and folders
    (name starting with ".") and files without an image extension are skipped, also when named directly
    (so a shell glob like `data/*` works). Entries named like images that are not regular files (a broken
    symbolic link, a FIFO, a socket, a device) are appended to `skipped` as (path, reason) when a list is
    given. A path that does not exist raises `ImageReadError`.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            candidates = p.rglob("*") if recursive else p.iterdir()
            for f in candidates:
                rel_parts = f.relative_to(p).parts
                if any(part.startswith(".") for part in rel_parts[:-1]) or not _is_image_name(f):
                    continue
                if f.is_file():
                    found.add(f)
                elif skipped is not None and not f.is_dir():
                    skipped.append((f, _not_a_file(f)))
        elif p.is_file():
            if _is_image_name(p):
                found.add(p)
        elif p.is_symlink() or p.exists():
            reason = _not_a_file(p)
            if skipped is None:
                raise ImageReadError(f"{p}: {reason}")
            skipped.append((p, reason))
        else:
            raise ImageReadError(f"{p}: no such file or folder")
    return sorted(found, key=lambda f: str(f))


def _not_a_file(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "broken symbolic link (its target is missing)"
    return "not a regular file (a FIFO, socket or device)"


def check_readable_file(path: Path) -> None:
    """Raise ImageReadError when `path` is missing, not a file or empty."""
    if not path.exists():
        raise ImageReadError(f"{path}: file not found")
    if not path.is_file():
        raise ImageReadError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: file is empty")


def is_tiff(path: Path) -> bool:
    """True when the file starts with a TIFF signature (the extension is not trusted). Opened without
    blocking and checked to be a regular file: a FIFO or device put there since `check_readable_file` is an
    ImageReadError, never a read that does not end."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot open file ({exc.strerror or exc})") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageReadError(f"{path}: {_not_a_file(Path(path))}")
        return os.read(fd, 4) in _TIFF_MAGIC
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)


def _read_tiff_first_plane(path: Path) -> np.ndarray:
    """First page of a TIFF as HxW or HxWxS (see the module docstring for the rule)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages:
                raise ImageReadError(f"{path}: TIFF file has no image pages")
            page = tif.pages[0]
            data = page.asarray()
            separate, depth, height, width, contig = page.shaped
            data = data.reshape(separate, depth, height, width, contig)[:, 0]  # (S_sep, Y, X, S_contig)
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises many types (TiffFileError, ValueError, KeyError, ...)
        raise ImageReadError(f"{path}: cannot read TIFF file ({exc})") from exc
    if separate > 1:
        data = np.moveaxis(data[..., 0], 0, -1)
    else:
        data = data[0]
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return data


def _pil_to_array(im: Image.Image) -> np.ndarray:
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "PA":
        im = im.convert("RGBA")
    elif im.mode in ("CMYK", "YCbCr", "HSV", "LAB"):
        im = im.convert("RGB")
    elif im.mode.startswith("I;16"):
        return np.array(im).astype(np.uint16)
    return np.array(im)  # a writable copy (np.asarray would give a read-only view of PIL's buffer)


def open_pil(path: Path) -> Image.Image:
    """Open and fully decode `path` with Pillow (first frame), turning decoder failures into ImageReadError."""
    try:
        im = Image.open(path)
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"{path}: not a recognised image file (corrupt or wrong extension)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: image too large to decode safely ({exc})") from exc
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot open file ({exc.strerror or exc})") from exc
    try:
        im.load()  # decode now: a truncated or corrupt file fails here, not later
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        im.close()
        msg = str(exc)
        if "truncated" in msg:
            raise ImageReadError(f"{path}: image file is truncated (incomplete download or copy?)") from exc
        raise ImageReadError(f"{path}: corrupt or unreadable image ({msg})") from exc
    except BaseException:
        im.close()
        raise
    return im


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Pixels of an image file as stored (HxW, HxWx2/3/4, any dtype); raises ImageReadError."""
    path = Path(path)
    check_readable_file(path)
    if is_tiff(path):
        return _read_tiff_first_plane(path)
    im = open_pil(path)
    try:
        try:
            ImageOps.exif_transpose(im, in_place=True)
        except Exception as exc:  # Pillow raises various types for a malformed EXIF block
            raise ImageReadError(f"{path}: corrupt EXIF orientation data ({exc})") from exc
        return _pil_to_array(im)
    finally:
        im.close()


def to_rgb_float(arr: np.ndarray) -> np.ndarray:
    """float32 HxWx3 in [0, 1] from any supported image array (rules in the module docstring)."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    elif arr.ndim == 3 and arr.shape[-1] in (1, 2, 3, 4):
        if arr.shape[-1] == 2:
            arr = arr[..., :1]
        elif arr.shape[-1] == 4:
            arr = arr[..., :3]
    else:
        raise UnsupportedImageError(
            f"unsupported image shape {arr.shape}: expected HxW (grey), HxWx1, HxWx2 (grey+alpha), "
            "HxWx3 (RGB) or HxWx4 (RGBA)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UnsupportedImageError(f"empty image of shape {arr.shape}")
    out = _scale_to_unit(arr)
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return np.ascontiguousarray(out, dtype=np.float32)


def _scale_to_unit(arr: np.ndarray) -> np.ndarray:
    kind = arr.dtype.kind
    if kind == "b":
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if kind not in "iuf":
        raise UnsupportedImageError(f"unsupported image dtype {arr.dtype} (shape {arr.shape})")
    values = arr.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        values = np.where(finite, values, 0.0)
    if not finite.any():
        return np.zeros(arr.shape, np.float32)
    lo = values[finite].min()
    hi = values[finite].max()
    if kind == "f" and lo >= 0.0 and hi <= 1.0:
        return values.astype(np.float32)
    if hi == lo:
        return np.zeros(arr.shape, np.float32)
    scaled = (values - lo) / (hi - lo)
    scaled[~finite] = 0.0
    return scaled.astype(np.float32)
