"""MaskCLIP+ on an annotation project: `maskclip train` and `maskclip refine`.

train: the project's images become training items (verified pixels = ground truth), pseudo labels are
computed once per image with the project's CLIP model and method settings (or the --model / --pretrained
override) in the teacher's dense mode (TrainConfig.teacher_mode: SCLIP for the clip student by default, the
project's mode otherwise; --dense-mode overrides) and cached in the run folder, then the student is trained
(loop.train).
refine: the trained student predicts every image; `Project.merge_prediction` writes the result as a
new label revision, so verified pixels never change and the previous labels stay in the image's
history (`Project.history` / `restore_revision`).
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..batch import FAILED, Prediction, default_errors, run_batch
from ..defaults import REFINE_MIN_CONFIDENCE
from ..dense_modes import DENSE_MODE_LABELS
from ..errors import MaskCLIPError
from ..validation import check_probability
from ..settings import clip_spec
from ..precision import autocast_dtype
from ..prompts import prompt_rows
from ..run_folder import PHASE_PSEUDO_LABELS, STATE_CANCELLED, STATE_DONE, STATE_FAILED, STATE_RUNNING
from . import distributed as D
from .data import TrainItem
from .inference import REFINE_BATCH_CUDA, BatchedPredictions
from .loop import (CHECKPOINT_FORMAT, ResumeError, RunFolder, TrainConfig, TrainResult, StopFlag, load_checkpoint,
                   load_student, train)
from .targets import TeacherCache, fill_teacher_cache

_OPEN: dict[str, object] = {}  # one Project instance per process and folder (loaders run in workers)


def _project(root: str):
    from ..project import Project

    if root not in _OPEN:
        _OPEN[root] = Project.open(root)
    return _OPEN[root]


def _load_image(root: str, image_id: str) -> np.ndarray:
    return _project(root).get_image(image_id)


def _load_annotation(root: str, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    return _project(root).get_labels_and_verified(image_id)


def project_items(project, log: Callable[[str], None] = print) -> tuple[list[TrainItem], list[str]]:
    """Training items of every usable image, and the ids of stale ones (skipped: their labels belong to
    other content). Images with damaged label files are skipped too, and logged."""
    root = str(Path(project.root).resolve())
    _OPEN[root] = project
    items, stale = [], []
    broken = {b["id"]: b["problem"] for b in project.broken_images()}
    for image_id, problem in broken.items():
        log(f"skipping {image_id}: {problem}")
    for state in project.list_images():
        if state.stale:
            stale.append(state.id)
            continue
        if state.id in broken:
            continue
        items.append(TrainItem(key=state.id, load_image=functools.partial(_load_image, root, state.id),
                               load_annotation=functools.partial(_load_annotation, root, state.id),
                               fingerprint=project.record(state.id).sha256,
                               shape=(project.record(state.id).height, project.record(state.id).width)))
    return items, stale


def _weights_key(pretrained) -> str:
    """Identity of the CLIP weights for the teacher cache (a file also by size and mtime)."""
    if pretrained is None:
        return "random"
    path = Path(str(pretrained))
    if path.is_file():
        st = path.stat()
        return f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return f"tag:{pretrained}"


def load_clip_model(spec: dict, device: torch.device, cache_dir, seed: int = 0, precision: str = "auto"):
    """maskclip.load with the spec; seeded so random weights (tests) are identical on every rank."""
    import maskclip

    torch.manual_seed(seed)
    return maskclip.load(spec["model"], spec["pretrained"], device=device, dense_mode=spec["dense_mode"],
                         quick_gelu=spec.get("quick_gelu"), cache_dir=cache_dir, precision=precision)


def _default_teacher_fits(config: TrainConfig, model_name: str, say: Callable[[str], None]) -> None:
    """A default teacher mode that only ViTs support (SCLIP) falls back to the project's mode for a ResNet
    CLIP (its open_clip config lists the stages' layers), with a note, instead of failing at load."""
    import open_clip

    from ..dense_modes import dense_mode as mode_spec
    from ..weights import CONFIG_DIR  # noqa: F401  (registers the maskclip-tiny-* architectures)

    if config.teacher_mode is None or not mode_spec(config.teacher_mode).vit_only:
        return
    layers = (open_clip.get_model_config(model_name) or {}).get("vision_cfg", {}).get("layers")
    if isinstance(layers, (list, tuple)):
        say(f"{model_name} is a ResNet CLIP, which supports only the maskclip dense mode: the teacher is the "
            f"project's mode, not the clip student's default {config.teacher_mode}")
        config.teacher_mode = None


def train_project(project_dir: str | Path, run_dir: str | Path, config: TrainConfig, *,
                  model: str | None = None, pretrained: str | None = None, dense_mode: str | None = None,
                  quick_gelu: bool | None = None, options: dict | None = None, device: str = "auto",
                  resume: bool = False, log: Callable[[str], None] = print,
                  stop: Callable[[int], bool] | None = None) -> TrainResult:
    """Pseudo-label the project with MaskCLIP (cached) and train a student; DDP under torchrun."""
    from ..project import Project

    ctx = D.setup(device)
    say = log if ctx.is_main else (lambda msg: None)
    flag = StopFlag(stop)
    try:
        flag.__enter__()  # SIGINT/SIGTERM during pseudo-labelling also end the run as 'cancelled'
        project = Project.open(project_dir)
        if not project.class_names:
            raise MaskCLIPError(f"project {project_dir} has no classes; add classes before training")
        run = RunFolder(run_dir)
        items, stale = project_items(project, say)
        if stale:
            say(f"skipping {len(stale)} stale image(s) (changed on disk since labelling): {', '.join(stale[:5])}"
                + (" ..." if len(stale) > 5 else ""))
        if not items:
            raise MaskCLIPError(f"project {project_dir} has no usable images")
        from .student import CLIP_STUDENT, resolve_student_name

        student = resolve_student_name(config.student, ctx.device)
        clip_student = student == CLIP_STUDENT
        if dense_mode is not None:  # --dense-mode: the teacher's mode, over the student's default
            config.teacher_mode = dense_mode
        if not resume:  # a resumed run keeps its settings (config.json); None there: the project's mode
            config.resolve_student_defaults(student)
            if dense_mode is None:
                _default_teacher_fits(config, clip_spec(project, model)["model"], say)
        spec = clip_spec(project, model, pretrained, config.teacher_mode, quick_gelu, options)
        if not resume:
            say(f"teacher: {spec['dense_mode']} pseudo labels" + (
                " (the clip student's default, the best training-free mode measured; --dense-mode changes it)"
                if clip_student and dense_mode is None and config.teacher_mode is not None else ""))
        rows, groups, names, _ = prompt_rows(project.prompts, spec["segment"]["background"])
        embeddings = None
        if resume and run.checkpoint.is_file():
            saved = load_checkpoint(run.checkpoint)
            if saved.get("format") == CHECKPOINT_FORMAT:
                if saved["classes"] != names:
                    raise ResumeError(f"the project's classes changed since this run started ({saved['classes']} "
                                      f"-> {names}); start a new run folder")
                embeddings = saved["model"]["class_embeddings"]
            del saved
        teacher = TeacherCache(run.teacher, {
            "model": spec["model"], "weights": _weights_key(spec["pretrained"]), "dense_mode": spec["dense_mode"],
            "quick_gelu": spec["quick_gelu"], "rows": rows, "groups": groups, "segment": spec["segment"]})
        if ctx.is_main:
            run.create()
            if not resume or not run.config.is_file():  # from the start: a run cancelled while pseudo-labelling
                run.write_json(run.config, {"train": config.to_dict(), "classes": names,  # resumes with its own
                                            "info": {"project": str(Path(project_dir).resolve()), "clip": spec},
                                            "world_size": ctx.world_size, "device": str(ctx.device)})
            teacher.open()
            run.write_progress(iteration=0, total=config.iters, phase=PHASE_PSEUDO_LABELS, state=STATE_RUNNING,
                               loss=None, error=None)
        D.barrier(ctx)
        # a missing, foreign or damaged file (wrong shape, values that are no class) is computed again
        missing = [it for it in items if not teacher.has(it.key, it.fingerprint, shape=it.shape, n_classes=len(names))]
        clip_model = None
        if missing or embeddings is None or clip_student:
            clip_model = load_clip_model(spec, ctx.device, project.cache_dir, config.seed,
                                         precision="auto" if config.amp else "float32")
        if missing:
            say(f"computing {DENSE_MODE_LABELS.get(spec['dense_mode'], spec['dense_mode'])} pseudo labels for {len(missing)} image(s) "
                f"({spec['model']}, {spec['pretrained'] or 'random weights'})")

            def report(done: int) -> None:
                if ctx.is_main:
                    run.write_progress(phase=PHASE_PSEUDO_LABELS, teacher_done=done * ctx.world_size,
                                       teacher_total=len(missing))

            fill_teacher_cache(teacher, missing, clip_model, project.prompts, spec["segment"], names,
                               rank=ctx.rank, world_size=ctx.world_size, progress=report,
                               should_stop=lambda: flag.requested(0))
        D.barrier(ctx)
        if D.any_rank(flag.requested(0), ctx):
            if ctx.is_main:
                run.write_progress(state=STATE_CANCELLED)
            say("cancelled while computing pseudo labels (they are kept; --resume continues)")
            return TrainResult("cancelled", 0, config.iters, None, 0.0, 0.0, None)
        if embeddings is None:
            embeddings = clip_model.encode_text(rows).detach().cpu()
        if not clip_student:
            clip_model = None  # the student needs no CLIP: free it before training
        info = {"project": str(Path(project_dir).resolve()), "clip": spec, "rows": rows, "groups": groups,
                "stale_skipped": stale}
        if resume and not run.checkpoint.is_file():  # e.g. cancelled while pseudo-labelling
            say("no checkpoint yet: training starts at iteration 0 (cached pseudo labels are reused)")
            resume = False
        return train(items, teacher, embeddings, names, run_dir, config, class_groups=groups, ctx=ctx,
                     resume=resume, info=info, stop=flag.requested, log=say, clip_model=clip_model)
    except BaseException as exc:
        if ctx.is_main:
            try:
                RunFolder(run_dir).write_progress(state=STATE_FAILED, error=f"{type(exc).__name__}: {exc}")
            except Exception:
                pass
        raise
    finally:
        flag.__exit__(None, None, None)
        D.cleanup(ctx)


def _write_refine_end(folder: RunFolder, state: str, started: float) -> None:
    """The last refine_progress.json of a refine (done or failed), keeping its counts."""
    from ..run_folder import read_refine_progress

    last = read_refine_progress(folder.path) or {}
    folder.write_refine_progress(done=last.get("done", 0), total=last.get("total", 0),
                                 failed=last.get("failed", 0), state=state, started=started)


def refine_project(project_dir: str | Path, run_dir: str | Path, *, device: str = "auto",
                   min_confidence: float = REFINE_MIN_CONFIDENCE, precision: str = "auto", log: Callable[[str], None] = print,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Predict every image with the run's student and merge the result into the project's labels.

    Verified pixels keep their labels (Project.merge_prediction); the labels before refinement stay as
    the previous revision of each image. When the project's classes differ from the training classes,
    the student's classifier is rebuilt from the CLIP text embeddings of the new classes (no retraining).
    Under torchrun the images are split across processes (no process group needed).
    The summary's "images" lists, per refined image, the pixels whose stored label changed (and their share)
    and the student's mean confidence (softmax maximum) over the image.
    """
    from ..project import Project

    check_probability(min_confidence, "min_confidence")
    dev = D.resolve_device(device, int(os.environ.get("LOCAL_RANK", "0")))
    dtype = autocast_dtype(dev, precision)  # bfloat16 / float16 on CUDA unless "float32"; the CPU: float32
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    project = Project.open(project_dir)
    student, record = load_student(run_dir)
    info = record.get("info", {})
    spec = info.get("clip")
    rows, groups, names, _ = prompt_rows(project.prompts, (spec or {}).get("segment", {}).get("background",
                                                                                             project.background))
    if names != list(record.get("classes", [])) or rows != info.get("rows"):
        if spec is None:
            raise MaskCLIPError("the project's classes differ from the run's and the run records no CLIP model "
                                "to embed the new ones")
        log(f"classes changed since training ({record.get('classes')} -> {names}); "
            "re-embedding them with CLIP (no retraining)")
        clip_model = load_clip_model(spec, dev, project.cache_dir, precision=precision)
        student.set_classes(clip_model.encode_text(rows).detach().cpu(), groups)
        del clip_model
    student = student.to(dev).eval()
    base_size = record.get("augment", {}).get("base_size")
    states = project.list_images()
    todo = [s.id for i, s in enumerate(states) if i % world == rank and not s.stale]
    stale = [s.id for s in states if s.stale]
    folder = RunFolder(run_dir) if rank == 0 else None  # only rank 0 reports (its share of the images)
    started = time.time()
    if folder is not None:
        folder.write_refine_progress(done=0, total=len(todo), started=started)
    if progress is not None:
        progress(0, len(todo))

    batched = BatchedPredictions(student, todo, project.get_image, base_size, dev, dtype,
                                 batch=REFINE_BATCH_CUDA if dev.type == "cuda" else 1, errors=default_errors())

    def predict_one(image_id: str) -> Prediction:
        labels, conf = batched(image_id)
        return Prediction(labels, conf, names)

    per_image: list[dict] = []

    def report(outcome, so_far) -> None:
        if outcome.status != FAILED and outcome.prediction is not None and outcome.merged is not None:
            conf = outcome.prediction.confidence
            changed = int(outcome.changed_pixels or 0)
            per_image.append({"id": outcome.image_id, "changed_pixels": changed,
                              "changed_fraction": round(changed / max(1, outcome.merged.size), 6),
                              "mean_confidence": round(float(conf.mean()), 6)})
        if outcome.status == FAILED:  # one bad image or label file is reported and skipped; the others go on
            log(f"skipped {outcome.image_id}: {outcome.error}")
        if folder is not None:
            folder.write_refine_progress(done=outcome.index, total=len(todo), failed=len(so_far.failed),
                                         started=started)
        if progress is not None:
            progress(outcome.index, len(todo))

    try:
        result = run_batch(project, todo, predict_one, source=f"maskclip+ refine ({Path(run_dir).name})",
                           min_confidence=min_confidence, count_changes=True, on_outcome=report)
    except BaseException:
        if folder is not None:
            _write_refine_end(folder, STATE_FAILED, started)
        raise
    if folder is not None:
        _write_refine_end(folder, STATE_DONE, started)
    failed = [{"id": image_id, "reason": reason} for image_id, reason in result.failed]
    changed_pixels = result.changed_pixels
    if stale:
        log(f"skipped {len(stale)} stale image(s): {', '.join(stale[:5])}" + (" ..." if len(stale) > 5 else ""))
    return {"refined": len(todo) - len(failed), "stale_skipped": stale, "failed": failed,
            "changed_pixels": changed_pixels, "classes": names, "images": per_image}
