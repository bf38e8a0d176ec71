"""The annotator's disk reads, as plain functions a napari worker runs (no Qt here).

Opening a project (creating it reads every image once), listing image states and reading a 12-Mpx image
with its labels each take from a few hundred milliseconds to seconds: the widget runs them in a worker and
only shows the result on the GUI thread, so the viewer keeps repainting and taking input meanwhile.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskclip.defaults import UNLABELLED
from maskclip.errors import MaskCLIPError
from maskclip.images import IMAGE_EXTENSIONS, list_images
from maskclip.project import PROJECT_FILE, ImageState, Project, StaleImageError
from maskclip.prompts import parse_classes_file

from ._label_sources import label_source
from .editing import to_layer_values

PROJECT_SUBFOLDER = "maskclip-project"  # where an image folder's project lives by default


@dataclass
class LoadedImage:
    """One image as the widget shows it: pixels, labels-layer values and the verified mask."""

    image_id: str
    image: np.ndarray
    values: np.ndarray  # labels-layer values (class i as i + 1, 0 = unlabelled)
    verified: np.ndarray
    stale_error: StaleImageError | None = None  # set when the file changed on disk: labels not applied
    has_labels: bool = False  # a labels revision is stored (segmented before, even if all background)
    source: str | None = None  # where its unverified pixels came from (`_label_sources.label_source`)


@dataclass
class OpenedProject:
    project: Project
    states: list[ImageState]
    first: LoadedImage | None  # the image to show first (the last one shown, else the first)


def load_image(project: Project, image_id: str) -> LoadedImage:
    """Read an image and its stored labels. Raises MaskCLIPError when the image cannot be read."""
    image = project.get_image(image_id)
    has_labels = project.has_labels(image_id)
    try:
        labels, verified = project.get_labels_and_verified(image_id)
        stale = None
    except StaleImageError as exc:  # the old labels are not applied to the new content
        labels = np.full(image.shape[:2], UNLABELLED, np.uint8)
        verified = np.zeros(image.shape[:2], bool)
        stale = exc
    source = label_source(project.history(image_id)) if has_labels else None
    return LoadedImage(image_id, image, to_layer_values(labels), verified, stale, has_labels, source)


def open_project(path: Path, project_dir: Path | None = None, classes_file: Path | None = None) -> Project:
    """A project folder, or an image folder's project (created on first use; images added to the folder
    since are picked up). An image folder without images is refused: no project is created."""
    path = Path(path)
    if (path / PROJECT_FILE).is_file():
        return Project.open(path)
    if not path.is_dir():
        raise MaskCLIPError(f"{path} is not a folder; open a folder of images or a project folder")
    project_dir = Path(project_dir) if project_dir else path / PROJECT_SUBFOLDER
    if (project_dir / PROJECT_FILE).is_file():
        project = Project.open(project_dir)
        project.add_images(path)  # known files are skipped
        return project
    if not list_images(path):
        raise MaskCLIPError(f"{path} has no images ({', '.join(IMAGE_EXTENSIONS)}): choose a folder of images "
                            "or a project folder; no project was created")
    classes = parse_classes_file(classes_file) if classes_file else ()
    return Project.create(project_dir, images=path, classes=classes, copy=False)


def open_job(path: Path, project_dir: Path | None = None, classes_file: Path | None = None) -> OpenedProject:
    """Worker body: open (or create) the project, list its images and read the first one to show."""
    project = open_project(path, project_dir, classes_file)
    states = project.list_images()
    first = None
    if len(project):
        last = project.settings.get("annotator", {}).get("last_image")
        try:
            first = load_image(project, last if last in project else project.image_ids[0])
        except MaskCLIPError:
            pass  # the widget shows it the usual way, with the error where the user looks
    return OpenedProject(project, states, first)
