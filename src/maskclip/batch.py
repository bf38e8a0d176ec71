"""The per-image batch loop: predict -> merge into the project -> skip and report bad images.

One loop for every place that labels many images of a project: `maskclip project segment` (MaskCLIP),
`maskclip refine` (the MaskCLIP+ student) and the annotator's segment job. It uses only the project's
public methods (`merge_prediction`, `get_labels`), so any store with those works.

`iter_batch` is a generator (one `ImageOutcome` per image: a GUI worker yields them, and cancelling stops
at the next image); `run_batch` drives it and returns a `BatchReport`. No torch here: the prediction is
the caller's `predict(image_id)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .errors import ImageReadError

MERGED, SKIPPED, FAILED = "merged", "skipped", "failed"


@dataclass
class Prediction:
    """What `predict(image_id)` returns: labels (HxW ints; with class_names, value i means class_names[i],
    else project class indices), an optional HxW confidence for `min_confidence`, and anything the caller
    wants back in the outcome (`payload`, e.g. the `maskclip.Segmentation` for display)."""

    labels: np.ndarray
    confidence: np.ndarray | None = None
    class_names: Sequence[str] | None = None
    payload: Any = None


@dataclass
class ImageOutcome:
    image_id: str
    index: int  # 1-based position in the batch
    total: int  # images in the batch (skipped ones included)
    status: str  # MERGED, SKIPPED (the `skip` predicate said so) or FAILED (error caught, batch goes on)
    prediction: Prediction | None = None  # set when predict succeeded (FAILED with it: the merge failed)
    merged: np.ndarray | None = None  # the labels as stored (verified pixels kept)
    error: BaseException | None = None
    changed_pixels: int | None = None  # with count_changes: pixels whose stored label changed


@dataclass
class BatchReport:
    merged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image id, reason)
    changed_pixels: int = 0
    cancelled: bool = False

    def add(self, outcome: ImageOutcome) -> None:
        if outcome.status == MERGED:
            self.merged.append(outcome.image_id)
            self.changed_pixels += outcome.changed_pixels or 0
        elif outcome.status == SKIPPED:
            self.skipped.append(outcome.image_id)
        else:
            self.failed.append((outcome.image_id, str(outcome.error)))


def default_errors() -> tuple[type[BaseException], ...]:
    """What one image may fail with without stopping the batch: an unreadable image, a project error on that
    image (damaged label file, vanished record, lock timeout ...)."""
    from .project import ProjectError

    return (ImageReadError, ProjectError)


def iter_batch(project, image_ids: Sequence[str], predict: Callable[[str], Prediction], *, source: str,
               min_confidence: float = 0.0, skip: Callable[[str], bool] | None = None, merge: bool = True,
               count_changes: bool = False, errors: tuple[type[BaseException], ...] | None = None
               ) -> Iterator[ImageOutcome]:
    """Predict and merge each image; yield its outcome.

    skip(image_id) True: the image is not predicted (e.g. stale, or already labelled). An error of a type in
    `errors` (default: `default_errors()`) while checking (`skip`), predicting or merging one image is that
    image's FAILED outcome; the batch goes on. merge=False only predicts (outcomes MERGED without `merged`).
    """
    errors = default_errors() if errors is None else errors
    total = len(image_ids)
    for index, image_id in enumerate(image_ids, start=1):
        outcome = ImageOutcome(image_id, index, total, MERGED)
        try:  # skip first (e.g. the staleness check: it reads the image and its state, which may be damaged)
            skipped = skip is not None and skip(image_id)
        except errors as exc:
            outcome.status, outcome.error = FAILED, exc
            yield outcome
            continue
        if skipped:
            outcome.status = SKIPPED
            yield outcome
            continue
        try:
            before = project.get_labels(image_id) if merge and count_changes else None
            outcome.prediction = prediction = predict(image_id)
            if merge:
                outcome.merged = project.merge_prediction(
                    image_id, prediction.labels, prediction.confidence, class_names=prediction.class_names,
                    min_confidence=min_confidence, source=source)
                if before is not None:
                    outcome.changed_pixels = int((outcome.merged != before).sum())
        except errors as exc:
            outcome.status, outcome.error = FAILED, exc
        yield outcome


def run_batch(project, image_ids: Sequence[str], predict: Callable[[str], Prediction], *, source: str,
              min_confidence: float = 0.0, skip: Callable[[str], bool] | None = None, count_changes: bool = False,
              errors: tuple[type[BaseException], ...] | None = None,
              on_outcome: Callable[[ImageOutcome, BatchReport], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> BatchReport:
    """`iter_batch` to the end (or until should_stop() is true before an image); on_outcome(outcome, report)
    after each image, with the report already counting it."""
    report = BatchReport()
    outcomes = iter_batch(project, image_ids, predict, source=source, min_confidence=min_confidence, skip=skip,
                          count_changes=count_changes, errors=errors)
    while True:
        if should_stop is not None and should_stop():
            report.cancelled = True
            break
        outcome = next(outcomes, None)
        if outcome is None:
            break
        report.add(outcome)
        if on_outcome is not None:
            on_outcome(outcome, report)
    return report
