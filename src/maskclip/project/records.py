"""The store's errors and record types: what callers catch and what the project's methods return.

Kept apart from the code that fills them so the annotator and the CLI can name them without loading more.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import MaskCLIPError


class ProjectError(MaskCLIPError):
    """The project folder or a request on it is invalid (message says what to do)."""


class StaleImageError(ProjectError):
    """The image file changed since its labels were made; they must not be applied to the new content."""


class ProjectBusyError(ProjectError):
    """Another process kept a file of the project locked for too long (a save could not proceed)."""


@dataclass(frozen=True)
class ClassInfo:
    """One class. `uid` never changes (renames and reorders keep it); stored labels refer to it."""

    uid: int
    name: str
    synonyms: tuple[str, ...] = ()
    colour: tuple[int, int, int] = (0, 0, 0)

    @property
    def prompt(self) -> list[str]:
        """Name plus synonyms: one item of `MaskCLIP.segment(classes=...)`."""
        return [self.name, *self.synonyms]

    def to_json(self) -> dict:
        return {"uid": self.uid, "name": self.name, "synonyms": list(self.synonyms), "colour": list(self.colour)}


@dataclass(frozen=True)
class ImageRecord:
    """An image of the project as imported: where it is and which content its labels belong to."""

    id: str
    file: str  # relative to the project folder (copies) or absolute (references)
    source: str  # the path it was imported from
    rel: str  # path relative to the imported folder, without suffix (used to match label files)
    sha256: str
    size: int
    mtime_ns: int
    height: int
    width: int

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ImageState:
    """What the annotator's image list and `project status` show for one image."""

    id: str
    path: Path
    height: int
    width: int
    rev: int  # 0 = never labelled
    labelled_pixels: int
    verified_pixels: int
    stale: bool  # the file changed (or vanished) since import: stored labels are not applied
    verified_background_pixels: int = 0  # unlabelled pixels a person confirmed as none of the classes

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def labelled_fraction(self) -> float:
        return self.labelled_pixels / self.pixels if self.pixels else 0.0

    @property
    def verified_fraction(self) -> float:
        return self.verified_pixels / self.pixels if self.pixels else 0.0

    @property
    def status(self) -> str:
        """'stale', 'unlabelled', 'verified' (every labelled pixel verified; an all-background image
        with confirmed background) or 'labelled'."""
        if self.stale:
            return "stale"
        if self.labelled_pixels == 0:
            return "verified" if self.verified_background_pixels else "unlabelled"
        if self.verified_pixels == self.labelled_pixels:
            return "verified"
        return "labelled"


@dataclass
class ImportReport:
    """Result of adding images or importing labels: what was taken and what was skipped, and why."""

    added: list[str]
    skipped: list[tuple[str, str]]  # (path or id, reason)
    missing: list[str]  # image ids without a matching label file (label import only)
    new_classes: list[str]  # classes added to the project because the label set named them
