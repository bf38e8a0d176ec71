"""The annotator's model session and its background jobs (no Qt here: plain generators run by napari workers).

`ModelSession` owns the loaded MaskCLIP model. A redraw whose image features and prompt embeddings the
engine already holds in memory (`MaskCLIP.is_ready`) is cheap (cosine scores + PD + KS + upsampling) and
may run on the GUI thread, unless the image is so large that even that part would hold the event loop
too long; anything else goes to a worker.

Learning from corrections uses the learner the project's settings name, built as `maskclip project segment
--learn-from-verified` builds it (`maskclip.learner.project_learner`); a job's worker re-reads the changed
verified pixels and fits it (`learn_all`), and a redraw is cheap only once it is fitted (`learning_ready`),
so the GUI thread never fits.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

import maskclip
from maskclip.batch import FAILED, Prediction, iter_batch
from maskclip.defaults import DEFAULT_DEVICE, DEFAULT_MODEL, DEFAULT_PRETRAINED
from maskclip.errors import MaskCLIPError
from maskclip.images import read_image
from maskclip.project import Project

from ._torch_env import import_torch_stack


# Redraws of at most this many output values (pixels x classes) run on the GUI thread: 1024 x 1024 pixels
# with 16 classes take ~40 ms on two CPU cores (bench/results.md: 512 x 512 x 21 in ~13 ms).
GUI_THREAD_REDRAW_VALUES = 1 << 24


@dataclass(frozen=True)
class ModelChoice:
    name: str = DEFAULT_MODEL
    weights: str | None = DEFAULT_PRETRAINED  # open_clip tag, checkpoint path, or None for random weights
    device: str = DEFAULT_DEVICE

    def describe(self) -> str:
        weights = "random weights" if self.weights is None else Path(self.weights).name
        return f"{self.name} ({weights})"


@dataclass(frozen=True)
class Method:
    """Everything besides the image that a segmentation depends on (a snapshot taken when a job starts)."""

    classes: tuple[tuple[str, ...], ...]
    background: tuple[str, ...]
    key_smoothing: bool = True
    prompt_denoising: bool = True
    pd_threshold: float = 0.5
    scales: tuple[int, ...] = (336,)
    dense_mode: str = "maskclip"
    other_options: tuple[tuple[str, object], ...] = ()  # further SegmentOptions fields from the project settings
    learner: str | None = None  # "Learn from corrections": the project's learner (settings.LEARNERS); None = off
    learn_weight: float = 0.5  # the class prototypes' blend weight (the text-prior learner has none)

    def _kwargs(self) -> dict:
        return dict(background=list(self.background), scales=self.scales, dense_mode=self.dense_mode,
                    key_smoothing=self.key_smoothing, prompt_denoising=self.prompt_denoising,
                    pd_threshold=self.pd_threshold, **dict(self.other_options))

    def segment(self, model: maskclip.MaskCLIP, image: np.ndarray, learned=None) -> maskclip.Segmentation:
        return model.segment(image, [list(c) for c in self.classes], learned=learned, **self._kwargs())

    def fit_key(self) -> tuple:
        """What a learner's fit depends on besides the verified pixels: the prompts and how they are scored,
        KS and PD included (the text-prior learner chooses how far to trust itself through that pipeline)."""
        return (self.classes, self.background, self.scales, self.dense_mode, self.key_smoothing,
                self.prompt_denoising, self.pd_threshold, self.other_options, self.learner)

    def is_ready(self, model: maskclip.MaskCLIP, image: np.ndarray) -> bool:
        """Features of this dense mode in memory and every name embedded (another mode re-encodes)."""
        return model.is_ready(image, [list(c) for c in self.classes], **self._kwargs())


@dataclass
class ModelSession:
    choice: ModelChoice
    model: maskclip.MaskCLIP
    cache_dir: Path | None = None  # the project's feature cache the model writes to
    learner: object | None = field(default=None, repr=False)  # "Learn from corrections": maskclip.learner's
    learner_synced: bool = False  # the learner has seen every verified pixel of the project
    # (learner version, Method.fit_key()) of the fits made in a worker, the latest last (the learner keeps as many)
    fitted: list[tuple] = field(default_factory=list, repr=False)
    taught: dict[str, int] = field(default_factory=dict)  # verified pixels per class (`taught_pixels`)
    _learn_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # GUI thread vs worker

    @classmethod
    def load(cls, choice: ModelChoice, cache_dir: Path | None) -> "ModelSession":
        """Slow (torch's import, weights from disk or the network): call from a worker. Raises MaskCLIPError
        subclasses. The annotator's only import of torch's stack is here, in the worker (triton hidden)."""
        import_torch_stack()
        model = maskclip.load(choice.name, pretrained=choice.weights, device=choice.device, cache_dir=cache_dir)
        return cls(choice, model, cache_dir)

    @property
    def on_cpu(self) -> bool:
        return self.model.device.type == "cpu"

    def serves(self, choice: ModelChoice, cache_dir: Path | None) -> bool:
        return self.choice == choice and self.cache_dir == cache_dir

    def is_cheap(self, image: np.ndarray, method: Method) -> bool:
        """True when segmenting needs neither the image encoder nor the text encoder nor a learner fit and
        the image is small enough for the rest to run on the GUI thread."""
        classes = len(method.classes) + (1 if method.background else 0)
        if image.shape[0] * image.shape[1] * classes > GUI_THREAD_REDRAW_VALUES:
            return False
        if method.learner is not None and not self.learning_ready(method):
            return False
        return method.is_ready(self.model, image)

    def segment(self, image: np.ndarray, method: Method) -> maskclip.Segmentation:
        learned = None
        if method.learner is not None and self.learner is not None:
            learned = self.learner.term(method.learn_weight)  # the weight: the class prototypes' only
        return method.segment(self.model, image, learned)

    # --- learning from corrections (maskclip.learner, as `maskclip project segment --learn-from-verified`) ----
    def _learner_for(self, method: Method):
        """The project's learner (the one its settings name, built as the CLI builds it) on the features this
        method segments with (scales, windows, dense mode); a new one when those changed."""
        from maskclip.learner import project_learner  # torch: loaded with the session

        wanted = project_learner(method.learner, method._kwargs(), dense_mode=method.dense_mode)
        if not _same_learner(self.learner, wanted):
            self.learner, self.learner_synced, self.fitted = wanted, False, []
        return self.learner

    def learning_ready(self, method: Method) -> bool:
        """The learner has every verified pixel and (the text-prior learner) was fitted for these prompts
        in a worker: a redraw only applies it."""
        from maskclip.learner import ProjectLearner, project_learner  # torch: loaded with the session

        learner = self.learner
        wanted = project_learner(method.learner, method._kwargs(), dense_mode=method.dense_mode)
        if not self.learner_synced or not _same_learner(learner, wanted):
            return False
        return not isinstance(learner, ProjectLearner) or (learner.version, method.fit_key()) in self.fitted

    def corrections_changed(self, other_project: bool = False) -> None:
        """New verified pixels were saved, or another project opened (GUI thread): the next segmentation
        re-reads (the learner starts over for another project) and refits first."""
        with self._learn_lock:
            self.learner_synced = False
            if other_project:
                self.taught = {}

    def learn_all(self, project, method: Method) -> Iterator[str]:
        """Worker body part: read the verified pixels of every image changed since the last time, then fit
        the learner for this method's prompts (so the redraws that follow only apply it)."""
        while True:  # until nothing changed meanwhile (the GUI thread may commit corrections)
            with self._learn_lock:
                learner = self._learner_for(method)
                pending = learner.pending(self.model, project)
                if not pending:
                    self.learner_synced = True
                    break
            for done, image_id in enumerate(pending, start=1):  # the learner itself is thread-safe
                yield f"Learning from the corrections of {image_id} ({done}/{len(pending)})…"
                learner.update_image(self.model, project, image_id)
        self.taught = taught_pixels(project)
        from maskclip.learner import ProjectLearner

        if not isinstance(learner, ProjectLearner):  # the class prototypes need no fit
            return
        key = (learner.version, method.fit_key())  # only a worker changes the learner: one job at a time
        if key not in self.fitted:
            if learner.taught():
                yield "Learning from the corrections: fitting…"
            fields = {k: v for k, v in method._kwargs().items() if k not in ("background", "scales", "dense_mode")}
            learner.fit(self.model, [list(c) for c in method.classes], list(method.background), **fields)
            self.fitted = [k for k in self.fitted if k[0] == learner.version][-(learner.KEPT_FITS - 1):] + [key]


def _same_learner(learner, wanted) -> bool:
    return type(learner) is type(wanted) and learner.feature_kwargs() == wanted.feature_kwargs()


BACKGROUND_TAUGHT = ""  # the key of confirmed background in `taught_pixels` (a class name is never empty)


def taught_pixels(project) -> dict[str, int]:
    """Verified pixels per class over the project's non-stale images: what the learner learns from, and
    under BACKGROUND_TAUGHT the confirmed background (it teaches the background prompts)."""
    counts = project.class_pixel_counts(verified_only=True)
    counts[BACKGROUND_TAUGHT] = sum(s.verified_background_pixels for s in project.list_images() if not s.stale)
    return counts


@dataclass
class JobResult:
    image_id: str
    segmentation: maskclip.Segmentation
    done: int
    total: int
    stored: bool = False  # merged into the project by the worker (verified pixels kept)
    merge_error: MaskCLIPError | None = None  # why the worker could not store it


def segment_job(session: ModelSession | None, choice: ModelChoice, cache_dir: Path | None,
                images: Sequence[tuple[str, Path]], method: Method, project=None,
                merge: bool = False) -> Iterator[object]:
    """Worker body: load the model if needed, then segment each (image id, path).

    Yields the ModelSession once loaded (so the GUI keeps it even if the job is cancelled later), a str
    while waiting on something slow, and a JobResult per image. Errors propagate to the worker's
    `errored` signal; cancelling stops at the next yield. With learning from corrections on (and the
    project given), the learner is brought up to date and fitted first.

    merge=True stores each prediction in the project here, in the worker (a 12-Mpx labels PNG takes
    ~0.5 s to write), through a Project instance of its own: the project merges its commits with the
    annotator's like another process's, so verified pixels and strokes made meanwhile are kept. The images
    go through `maskclip.batch.iter_batch`, the loop `maskclip project segment` and `maskclip refine` use.
    """
    if session is None or not session.serves(choice, cache_dir):
        yield f"Loading {choice.describe()}…"
        session = ModelSession.load(choice, cache_dir)
        yield session
    if method is not None and method.learner is not None and project is not None:
        yield from session.learn_all(project, method)
    paths = dict(images)
    ids = [image_id for image_id, _ in images]

    def predict(image_id: str) -> Prediction:
        seg = session.segment(read_image(paths[image_id]), method)
        return Prediction(seg.labels, seg.probs.max(axis=0), seg.class_names, seg)  # confidence: for review

    store = merge and project is not None
    # the core's per-image loop (maskclip.batch): predict -> merge -> skip-and-report. Only a merge error
    # is this image's alone (the job goes on); a read or segmentation error ends the job, as it always did
    outcomes = iter_batch(_LazyWriter(project.root) if store else None, ids, predict, source="maskclip",
                          merge=store, errors=(MaskCLIPError,))
    for done, image_id in enumerate(ids, start=1):
        yield f"Segmenting {image_id} ({done}/{len(ids)})…"
        outcome = next(outcomes)
        if outcome.prediction is None:  # failed before a prediction: not the merge's error
            raise outcome.error
        result = JobResult(image_id, outcome.prediction.payload, done, len(ids))
        if outcome.status == FAILED:
            result.merge_error = outcome.error
        elif store:
            result.stored = True
        yield result


class _LazyWriter:
    """The worker's own Project instance, opened at the first merge (an open that fails is that image's
    merge error, like any other)."""

    def __init__(self, root: Path):
        self._root, self._project = root, None

    def _open(self) -> Project:
        if self._project is None:
            self._project = Project.open(self._root)
        return self._project

    def merge_prediction(self, *args, **kwargs):
        return self._open().merge_prediction(*args, **kwargs)

    def get_labels(self, image_id: str):
        return self._open().get_labels(image_id)
