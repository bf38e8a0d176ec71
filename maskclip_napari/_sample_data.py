"""Offline sample data: public-domain / CC0 photos bundled with scikit-image.

napari's "sample data" menu and the launcher open them in the annotator as an image folder with its
project in the user cache folder. Small copies live in the repository's top-level sample_data/ folder, which
the wheel ships inside this package as `maskclip_napari/sample_data` (package data, found with
importlib.resources); only when neither is there (a copied source file, say) are they written again from
scikit-image into the user cache folder.
"""
from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np

from maskclip.atomic import atomic_write

# skimage.data name -> file stem. All four ship inside scikit-image (no download needed).
SAMPLE_PHOTOS = {
    "astronaut": "astronaut",  # NASA, public domain
    "chelsea": "cat",  # CC0, Stefan van der Walt
    "coffee": "coffee",  # CC0, Rachel Michetti
    "rocket": "rocket",  # SpaceX, public domain
}
SAMPLE_CLASSES = ["person, astronaut", "cat", "cup, mug", "rocket", "flag", "table"]
MAX_SIDE = 320  # keeps the copies small (a few tens of kB) and segmentation quick on a CPU

_REPO_SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"


def _photo(name: str, max_side: int | None = None) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if max_side and max(img.shape[:2]) > max_side:
        from skimage.transform import resize

        scale = max_side / max(img.shape[:2])
        shape = (round(img.shape[0] * scale), round(img.shape[1] * scale))
        img = (resize(img, shape, anti_aliasing=True) * 255).round().astype(np.uint8)
    return img


def sample_scenes():
    """napari sample data: the photos open in the annotator (docked if needed) as its project, instead of
    plain image layers stacked over an open project.

    napari insists on layer data from a sample: the annotator's own image layer is handed back as that
    (same name and pixels; the annotator keeps it at the bottom of the layer list)."""
    import napari

    from ._dock import dock_annotator
    from ._layer_manager import IMAGE_LAYER

    viewer = napari.current_viewer()
    widget = dock_annotator(viewer)
    if not widget.open_path(sample_folder(), project_dir=sample_project_dir(),
                            classes_file=sample_classes_file()):
        raise RuntimeError(widget.message_text())
    layer = widget.image_layer
    viewer.layers.remove(layer)
    return [(layer.data, {"name": IMAGE_LAYER, "rgb": layer.rgb}, "image")]


def write_sample_folder(dest: Path) -> Path:
    """Write the downsized photos (JPEG) and a classes file to `dest`; returns the image folder."""
    from PIL import Image

    images = Path(dest) / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name, stem in SAMPLE_PHOTOS.items():
        out = images / f"{stem}.jpg"
        if not out.exists():
            with atomic_write(out, "wb") as f:
                Image.fromarray(_photo(name, MAX_SIDE)).save(f, format="JPEG", quality=90)
    classes = Path(dest) / "classes.txt"
    if not classes.exists():
        classes.write_text("\n".join(SAMPLE_CLASSES) + "\n")
    return images


def user_cache_dir() -> Path:
    """Where the launcher keeps the demo project (and, failing the shipped copy, the sample photos): the
    platform's user cache folder, or $MASKCLIP_CACHE_DIR (`maskclip.paths`)."""
    from maskclip.paths import user_cache_dir as platform_cache_dir

    return platform_cache_dir()


def _shipped_samples() -> Path | None:
    """The installed package's copy (package data), when this is an installed package."""
    try:
        folder = resources.files(__package__).joinpath("sample_data")
    except (ModuleNotFoundError, TypeError):  # pragma: no cover
        return None
    return folder if isinstance(folder, Path) else None  # wheels install unzipped: a real folder


def sample_folder() -> Path:
    """The sample image folder: the installed package's copy, else the repository's, else a copy written to
    the user cache folder."""
    for folder in (_shipped_samples(), _REPO_SAMPLES):
        if folder is None:
            continue
        images = folder / "images"
        if images.is_dir() and any(images.iterdir()) and (folder / "classes.txt").is_file():
            return images
    return write_sample_folder(user_cache_dir() / "sample_data")


def sample_project_dir(folder: Path | None = None) -> Path:
    """The sample photos' project in the user cache folder, one per sample folder: a project remembers where
    its images are, so a moved or second checkout gets its own project instead of one whose images are gone."""
    folder = Path(folder or sample_folder()).resolve()
    return user_cache_dir() / "sample-projects" / f"sample-photos-{hashlib.sha1(str(folder).encode()).hexdigest()[:8]}"


def sample_classes_file() -> Path:
    return sample_folder().parent / "classes.txt"
