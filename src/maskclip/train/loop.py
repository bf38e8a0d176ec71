"""The MaskCLIP+ training loop.

It writes the run folder laid out in `maskclip.run_folder` (config.json, progress.json, metrics.jsonl,
checkpoints/last.pt every `checkpoint_every` iterations, on SIGINT/SIGTERM and at the end, student.pt,
teacher/).

Determinism: batch composition and augmentation come from `data.BatchPlan` (a function of seed and
iteration) and dropout is reseeded every iteration, so an interrupted-and-resumed run reaches the same
weights, optimizer state and iteration as an uninterrupted one (bit-exact on CPU).
"""
from __future__ import annotations

import copy
import pickle
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..atomic import atomic_torch_save
from ..defaults import CLIP_STUDENT_TRAIN_DEFAULTS, TORCHVISION_STUDENT_TRAIN_DEFAULTS
from ..dense_modes import DENSE_MODE_NAMES
from ..errors import MaskCLIPError
from ..run_folder import (STATE_CANCELLED, STATE_DONE, STATE_FAILED, STATE_RUNNING,  # noqa: F401
                          RunFolder)  # RunFolder re-exported (maskclip.train.RunFolder)
from ..validation import check_positive, check_probability
from . import distributed as D
from .data import AugmentConfig, BatchPlan, PlannedBatches, TrainDataset, TrainItem
from .student import CLIP_DECODERS, CLIP_STUDENT, DEFAULT_LOGIT_SCALE, Student, build_student, resolve_student_name
from .targets import (IGNORE, TeacherCache, class_balanced_self_training_target, class_balanced_thresholds,
                      self_training_target)

CHECKPOINT_FORMAT = 1
PAPER_GUIDED_FRACTION = 0.1  # MaskCLIP+ starts self-training after the first tenth of the schedule
PHASE_GUIDED = "guided"
PHASE_SELF = "self-training"


class ResumeError(MaskCLIPError):
    """--resume was asked for but there is nothing (compatible) to resume from."""


class CheckpointError(MaskCLIPError):
    """A checkpoint or student file is missing, damaged, or holds more than weights and plain data."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A run's checkpoint or student file. Loaded with weights_only=True: tensors and plain data only, so a
    tampered file cannot run code (the files this package writes hold nothing else)."""
    path = Path(path)
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path} was not loaded: it holds objects other than weights and plain data (not a "
                              "file maskclip wrote, or a tampered one); train again into a new run folder") from exc
    except Exception as exc:  # torch raises RuntimeError/EOFError/... for damaged archives
        raise CheckpointError(f"{path} is corrupt or truncated ({type(exc).__name__}: {str(exc)[:200]}); "
                              "train again or restore the file") from exc
    if not isinstance(record, dict) or not isinstance(record.get("model"), dict) \
            or not isinstance(record.get("student"), dict):
        raise CheckpointError(f"{path} is not a maskclip checkpoint (no student weights in it)")
    return record


@dataclass
class TrainConfig:
    """MaskCLIP+ training settings; defaults follow the paper (docs/architecture.md, "MaskCLIP+"), except the
    student-dependent ones left None here (resolve_student_defaults: the clip student's measured recipe)."""

    # None (iters, batch_size, teacher_mode, confidence_keep, ema_decay): the student's default, settled by
    # resolve_student_defaults when a run starts (defaults.CLIP_STUDENT_TRAIN_DEFAULTS / TORCHVISION_...)
    iters: int | None = None
    batch_size: int | None = None         # global: split evenly over the torchrun processes
    teacher_mode: str | None = None       # dense mode of the teacher's pseudo labels (settled None: the project's)
    student: str = "auto"                 # see student.STUDENT_NAMES and resolve_student_name
    imagenet_backbone: bool = True
    logit_scale: float = DEFAULT_LOGIT_SCALE
    optimizer: str = "auto"               # auto: AdamW for the clip student, SGD (the paper's) for the others
    lr: float | None = None               # None: 1e-4 with AdamW, 0.01 with SGD
    min_lr: float | None = None           # None: lr / 100 (poly decay floor)
    momentum: float = 0.9
    weight_decay: float | None = None     # None: 0.01 with AdamW, 5e-4 with SGD
    freeze_blocks: int = 0                # clip student: patch embedding + the first N blocks (stages) frozen
    clip_dense_mode: str | None = None    # clip student: its tower's ViT last block (None: the teacher's mode)
    clip_decoder: str = "light"           # clip student: student.CLIP_DECODERS
    poly_power: float = 0.9
    guided_fraction: float | None = None  # share of the schedule trained on MaskCLIP's labels (None: auto)
    self_train_start: int | None = None   # explicit iteration (overrides guided_fraction)
    confidence_threshold: float | None = None   # teacher probability below -> ignored
    self_train_threshold: float | None = None   # student probability below -> ignored (self-training)
    confidence_keep: float | None = None  # per class, keep the teacher's most confident share of its pixels (1: all)
    ema_decay: float | None = None        # mean teacher: an EMA of the weights labels self-training, is the result
    #                                       (0: off in effect, the average is the current weights)
    self_train_keep_teacher: bool = False  # self-training relabels only pixels the teacher is unsure of
    self_train_balance: float | None = None  # class-balanced self-training: share of each class's pixels kept
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    amp: bool = True                      # mixed precision on CUDA (ignored on CPU)
    num_workers: int = 0                  # DataLoader workers per process
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def switch_iteration(self) -> int:
        """First iteration of the self-training phase (== iters: no self-training)."""
        if self.self_train_start is not None:
            return max(0, min(self.iters, int(self.self_train_start)))
        fraction = PAPER_GUIDED_FRACTION if self.guided_fraction is None else self.guided_fraction
        return max(0, min(self.iters, round(fraction * self.iters)))

    def resolve_self_training(self, imagenet_backbone: bool, student: str | None = None) -> bool:
        """Settle an automatic switch (neither guided_fraction nor self_train_start given): the paper's
        1/10 for a torchvision student that starts from ImageNet weights; no self-training for one that starts
        from random weights, whose own early predictions collapse onto the dominant classes
        (bench/bench_student_vs_teacher.py), nor for the clip student, for which self-training from half the
        schedule cost 3.1 mIoU on the toy CLIP (bench/results.md, "--compare"). True when it chose to turn
        self-training off."""
        if self.guided_fraction is not None or self.self_train_start is not None:
            return False
        on = imagenet_backbone and student != CLIP_STUDENT
        self.guided_fraction = PAPER_GUIDED_FRACTION if on else 1.0
        return not on

    def resolve_student_defaults(self, student: str) -> None:
        """Give the settings left None the (resolved) student's defaults: for the clip student the recipe measured
        best on the toy CLIP (SCLIP teacher, confidence-keep 0.2, EMA 0.99, 300 iterations at batch 16), for the
        torchvision students the paper's (defaults.py). Call it when a run starts, never on resume: a run keeps
        the settings it was started with."""
        table = CLIP_STUDENT_TRAIN_DEFAULTS if student == CLIP_STUDENT else TORCHVISION_STUDENT_TRAIN_DEFAULTS
        for name, value in table.items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    def resolve_optimizer(self, student: str) -> None:
        """Settle the automatic optimizer settings for a (resolved) student name."""
        if self.optimizer == "auto":
            self.optimizer = "adamw" if student == CLIP_STUDENT else "sgd"
        adamw = self.optimizer == "adamw"
        if self.lr is None:
            self.lr = 1e-4 if adamw else 0.01
        if self.min_lr is None:
            self.min_lr = self.lr / 100
        if self.weight_decay is None:
            self.weight_decay = 0.01 if adamw else 5e-4

    def phase(self, iteration: int) -> str:
        return PHASE_GUIDED if iteration < self.switch_iteration else PHASE_SELF

    def lr_at(self, iteration: int) -> float:
        frac = min(1.0, iteration / max(1, self.iters))
        return (self.lr - self.min_lr) * (1.0 - frac) ** self.poly_power + self.min_lr

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"]["scale_range"] = list(self.augment.scale_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        aug = dict(d.pop("augment", {}))
        if "scale_range" in aug:
            aug["scale_range"] = tuple(aug["scale_range"])
        known = {f.name for f in fields(cls)}
        known_aug = {f.name for f in fields(AugmentConfig)}
        return cls(**{k: v for k, v in d.items() if k in known},
                   augment=AugmentConfig(**{k: v for k, v in aug.items() if k in known_aug}))

    @classmethod
    def from_json(cls, path: str | Path) -> "TrainConfig":
        """A run's config.json (`--resume`), schema-checked: every error names the file and the field."""
        from ..run_folder import RunFolderError, read_config
        from ..validation import json_value_fits

        train_d = read_config(Path(path))["train"]

        def bad(field_name: str, value, want) -> RunFolderError:
            return RunFolderError(f"{path}: malformed run configuration ('train.{field_name}' must be of type "
                                  f"{want}, got {value!r}); correct it or start a new run folder")

        for f in fields(cls):
            if f.name == "augment":
                if not isinstance(train_d.get("augment", {}), dict):
                    raise bad("augment", train_d["augment"], "object")
                for g in fields(AugmentConfig):
                    aug = train_d.get("augment", {})
                    if g.name in aug and not json_value_fits(str(g.type), aug[g.name]):
                        raise bad(f"augment.{g.name}", aug[g.name], g.type)
            elif f.name in train_d and not json_value_fits(str(f.type), train_d[f.name]):
                raise bad(f.name, train_d[f.name], f.type)
        try:
            config = cls.from_dict({k: v for k, v in train_d.items()
                                    if k != "augment" or isinstance(v, dict)})
            config.validate()
        except (MaskCLIPError, TypeError, ValueError) as exc:
            raise RunFolderError(f"{path}: malformed run configuration ({exc}); correct it or start a new run "
                                 "folder") from None
        return config

    def validate(self, world_size: int = 1) -> None:
        """Check the given settings (None ones are settled by resolve_student_defaults, then checked again)."""
        if self.iters is not None and self.iters < 1:
            raise MaskCLIPError("--iters must be at least 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise MaskCLIPError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.optimizer not in ("auto", "sgd", "adamw"):
            raise MaskCLIPError(f"--optimizer must be auto, sgd or adamw, got {self.optimizer!r}")
        if self.clip_decoder not in CLIP_DECODERS:
            raise MaskCLIPError(f"--clip-decoder must be one of {', '.join(CLIP_DECODERS)}, got {self.clip_decoder!r}")
        if self.teacher_mode is not None and self.teacher_mode not in DENSE_MODE_NAMES:
            raise MaskCLIPError(f"unknown dense mode '{self.teacher_mode}' for the teacher (known: "
                                f"{', '.join(DENSE_MODE_NAMES)})")
        if self.clip_dense_mode is not None and self.clip_dense_mode not in DENSE_MODE_NAMES:
            raise MaskCLIPError(f"unknown dense mode '{self.clip_dense_mode}' for the clip student (known: "
                                f"{', '.join(DENSE_MODE_NAMES)})")
        if self.freeze_blocks < 0:
            raise MaskCLIPError(f"--freeze-blocks must be at least 0, got {self.freeze_blocks}")
        if self.lr is not None:
            check_positive(self.lr, "--lr")
        if self.lr is not None and self.min_lr is not None and not 0.0 <= self.min_lr <= self.lr:
            raise MaskCLIPError(f"min_lr must lie in [0, lr={self.lr}], got {self.min_lr}")
        if self.guided_fraction is not None:
            check_probability(self.guided_fraction, "--guided-fraction")
        if self.self_train_start is not None and self.self_train_start < 0:
            raise MaskCLIPError(f"--self-train-start must be at least 0, got {self.self_train_start}")
        if self.augment.crop_size < 1 or (self.augment.base_size is not None and self.augment.base_size < 1):
            raise MaskCLIPError("--crop-size and --base-size must be at least 1 pixel")
        if self.batch_size is not None and (self.batch_size < world_size or self.batch_size % world_size):
            raise MaskCLIPError(f"the batch size ({self.batch_size}) must be a multiple of the number of "
                                f"processes ({world_size})")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise MaskCLIPError("checkpoint and log intervals must be at least 1")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise MaskCLIPError(f"--ema-decay must lie in [0, 1), got {self.ema_decay}")
        if self.self_train_balance is not None and not 0.0 < self.self_train_balance <= 1.0:
            raise MaskCLIPError(f"--self-train-balance must lie in (0, 1], got {self.self_train_balance}")
        if self.confidence_keep is not None and not 0.0 < self.confidence_keep <= 1.0:
            raise MaskCLIPError(f"--confidence-keep must lie in (0, 1], got {self.confidence_keep}")
        for name in ("confidence_threshold", "self_train_threshold"):
            v = getattr(self, name)
            if v is not None:
                check_probability(v, name)


class StopFlag:
    """SIGINT/SIGTERM -> stop after the current iteration (installed only on the main thread)."""

    def __init__(self, extra: Callable[[int], bool] | None = None):
        self.signal: int | None = None
        self.extra = extra
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def requested(self, iteration: int) -> bool:
        return self.signal is not None or (self.extra is not None and bool(self.extra(iteration)))


@dataclass
class TrainResult:
    state: str                 # done / cancelled
    iteration: int
    total: int
    loss: float | None
    seconds: float
    images_per_s: float
    student: Student


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over labelled pixels; a batch without any labelled pixel gives a zero loss (not NaN)."""
    if not bool((target != IGNORE).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE)


def _update_ema(ema: Student, model: Student, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for every trained weight; buffers are copied."""
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - decay)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


def _checkpoint_state(model: Student, optimizer, scaler, iteration: int, config: TrainConfig,
                      extra: dict, ema: Student | None = None) -> dict:
    return {"format": CHECKPOINT_FORMAT, "iteration": iteration, "model": model.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "student": model.metadata(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "config": config.to_dict(), **extra}


def _save(path: Path, state: dict) -> None:
    atomic_torch_save(state, path)  # a full disk or file-size limit: FileWriteError, not torch's C++ text


def train(items: Sequence[TrainItem], teacher: TeacherCache, class_embeddings: torch.Tensor,
          class_names: Sequence[str], run_dir: str | Path, config: TrainConfig, *,
          class_groups: Sequence[int] | None = None, ctx: D.DistContext | None = None, resume: bool = False,
          info: dict | None = None, stop: Callable[[int], bool] | None = None,
          log: Callable[[str], None] | None = None, clip_model=None) -> TrainResult:
    """Train a student on `items` (pseudo labels from `teacher`, ground truth on verified pixels).

    class_embeddings [R,D] (+ class_groups, row -> output class) define the frozen classifier;
    class_names name the output classes. `info` is stored in config.json / the checkpoints (e.g. the
    project and the CLIP model). `stop(iteration)` returning True stops like a signal (tests, GUIs).
    Returns after `config.iters` iterations or a stop request; a failure marks the run `failed`.
    clip_model: the teacher's CLIP (a maskclip.MaskCLIP or open_clip model), needed by the `clip` student
    (its image tower is copied; on resume the checkpoint's weights replace the copy).
    """
    ctx = ctx or D.DistContext(device=D.resolve_device("auto"))
    run = RunFolder(run_dir)
    info = dict(info or {})
    say = log if (log is not None and ctx.is_main) else (lambda msg: None)
    device = ctx.device
    name = resolve_student_name(config.student, device)
    config.student = name
    if not resume:  # a resumed run keeps the settings it started with (config.json)
        config.resolve_student_defaults(name)
    config.resolve_optimizer(name)
    config.validate(ctx.world_size)

    ckpt = None
    if resume:
        if not run.checkpoint.is_file():
            raise ResumeError(f"nothing to resume: {run.checkpoint} does not exist (start without --resume)")
        ckpt = load_checkpoint(run.checkpoint)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ResumeError(f"{run.checkpoint} was written by an incompatible version")
        if ckpt["student"]["name"] != name:
            raise ResumeError(f"the run was trained with student {ckpt['student']['name']}, not {name}")
        if ckpt.get("classes") != list(class_names):
            raise ResumeError(f"the run was trained for classes {ckpt.get('classes')}, not {list(class_names)}; "
                              "start a new run folder")

    def write_config() -> None:
        run.write_json(run.config, {"train": config.to_dict(), "classes": list(class_names), "info": info,
                                    "world_size": ctx.world_size, "device": str(device)})

    if ctx.is_main:
        run.create()
        write_config()
        run.write_progress(iteration=ckpt["iteration"] if ckpt else 0, total=config.iters,
                           phase=config.phase(ckpt["iteration"] if ckpt else 0), state=STATE_RUNNING,
                           error=None, world_size=ctx.world_size)
    try:
        torch.manual_seed(config.seed)
        model = build_student(name, class_embeddings, groups=class_groups,
                              imagenet_backbone=config.imagenet_backbone and ckpt is None,
                              logit_scale=config.logit_scale, clip_model=clip_model,
                              clip_spec=ckpt["student"].get("clip") if ckpt is not None else None,
                              freeze_blocks=config.freeze_blocks, clip_dense_mode=config.clip_dense_mode,
                              clip_decoder=config.clip_decoder).to(device)
        if ckpt is None:
            if not model.imagenet_loaded:
                info["imagenet_backbone"] = False
            turned_off = config.resolve_self_training(model.imagenet_loaded, name)
            if turned_off and name == CLIP_STUDENT:
                say("self-training is off for the clip student (MaskCLIP labels and verified pixels only): on the "
                    "toy CLIP it lowered the student's mIoU; --guided-fraction or --self-train-start turns it on")
            elif turned_off:
                say("the student starts from random weights: self-training is off (MaskCLIP labels and verified "
                    "pixels only), as a random student's own labels collapse onto the dominant classes; "
                    "--guided-fraction or --self-train-start turns it on")
            elif not model.imagenet_loaded and config.switch_iteration < config.iters:
                say(f"warning: the student starts from random weights and self-training begins at iteration "
                    f"{config.switch_iteration}; an untrained student's own labels can collapse onto the "
                    "dominant classes")
            if ctx.is_main:
                write_config()  # with the settled switch and whether ImageNet weights were loaded
        elif config.guided_fraction is None and config.self_train_start is None:
            config.guided_fraction = ckpt["config"].get("guided_fraction")  # as settled when the run began
        params = [p for p in model.parameters() if p.requires_grad]
        if config.optimizer == "adamw":
            optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        else:
            optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                        weight_decay=config.weight_decay)
        use_amp = config.amp and device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda") if use_amp else None
        start = 0
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if scaler is not None and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            start = int(ckpt["iteration"])
            if ctx.is_main:
                run.truncate_metrics(start)
            say(f"resuming at iteration {start}/{config.iters}")
        ema = None
        if config.ema_decay is not None:  # the mean teacher: a frozen copy that follows the weights
            ema = copy.deepcopy(model).eval().requires_grad_(False)
            if ckpt is not None and ckpt.get("ema") is not None:
                ema.load_state_dict(ckpt["ema"])
        net: torch.nn.Module = model
        if ctx.distributed:
            if device.type == "cuda":
                net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
            net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None)

        per_rank = config.batch_size // ctx.world_size
        plan = BatchPlan(len(items), per_rank, seed=config.seed, rank=ctx.rank, world_size=ctx.world_size)
        bars = config.confidence_threshold
        if config.confidence_keep is not None:  # class-balanced bars (on top of a global one, if any)
            bars = np.maximum(class_balanced_thresholds(teacher, items, len(class_names), config.confidence_keep),
                              config.confidence_threshold or 0.0)
            say("teacher confidence bars per class (keeping the most confident "
                f"{100 * config.confidence_keep:.0f}% of each): "
                + ", ".join(f"{c} {b:.2f}" for c, b in zip(class_names, bars)))
        dataset = TrainDataset(items, teacher, config.augment, bars)
        loader = DataLoader(dataset, batch_sampler=PlannedBatches(plan, start, config.iters),
                            num_workers=config.num_workers, pin_memory=device.type == "cuda",
                            persistent_workers=False)
        extra_state = {"classes": list(class_names), "info": info, "augment": asdict(config.augment)}

        def save_checkpoint(iteration: int) -> None:
            if ctx.is_main:
                _save(run.checkpoint, _checkpoint_state(model, optimizer, scaler, iteration, config, extra_state, ema))

        t0 = time.perf_counter()
        window_t, window_loss, window_n = t0, 0.0, 0
        last_loss = None
        iteration = start
        state = STATE_DONE
        net.train()
        with StopFlag(stop) as flag:
            for it, (img, target, verified) in zip(range(start, config.iters), loader):
                img = img.to(device, non_blocking=True)
                target = target.to(device, non_blocking=True)
                verified = verified.to(device, non_blocking=True)
                lr = config.lr_at(it)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                torch.manual_seed(config.seed * 1_000_003 + it)  # dropout etc.: a function of the iteration
                phase = config.phase(it)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    logits = net(img)
                if phase == PHASE_SELF:
                    source = logits
                    if ema is not None:  # mean teacher: the averaged weights label the batch
                        with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                            source = ema(img)
                    # keep_teacher: pixels the teacher labelled (confident ones, with a threshold) keep its label
                    fixed = verified | (target != IGNORE) if config.self_train_keep_teacher else verified
                    if config.self_train_balance is not None:
                        target = class_balanced_self_training_target(source, target, fixed, config.self_train_balance)
                    else:
                        target = self_training_target(source, target, fixed, config.self_train_threshold)
                loss = _cross_entropy(logits, target)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                if ema is not None:
                    _update_ema(ema, model, config.ema_decay)
                iteration = it + 1
                window_loss += float(loss.detach())
                window_n += 1
                stopping = D.any_rank(flag.requested(iteration), ctx)
                if iteration % config.log_every == 0 or iteration == config.iters or stopping:
                    now = time.perf_counter()
                    last_loss = D.mean_over_ranks(window_loss / window_n, ctx)
                    ips = window_n * config.batch_size / max(now - window_t, 1e-9)
                    if ctx.is_main:
                        run.append_metrics({"iteration": iteration, "loss": last_loss, "lr": lr, "phase": phase,
                                            "epoch": round(plan.epoch_of(iteration), 3), "images_per_s": ips,
                                            "time": time.time()})
                        run.write_progress(iteration=iteration, total=config.iters,
                                           phase=config.phase(iteration) if iteration < config.iters else phase,
                                           loss=last_loss, images_per_s=ips)
                    say(f"iter {iteration}/{config.iters} {phase} loss {last_loss:.4f} lr {lr:.5f} "
                        f"{ips:.2f} img/s")
                    window_t, window_loss, window_n = now, 0.0, 0
                if stopping:
                    state = STATE_CANCELLED
                    break
                if iteration % config.checkpoint_every == 0 and iteration < config.iters:
                    save_checkpoint(iteration)
        seconds = time.perf_counter() - t0
        save_checkpoint(iteration)
        if ctx.is_main:
            if state == STATE_DONE:  # with a mean teacher its averaged weights are the result
                result_model = ema if ema is not None else model
                _save(run.student, {"format": CHECKPOINT_FORMAT, "student": result_model.metadata(),
                                    "model": result_model.state_dict(), **extra_state})
            run.write_progress(iteration=iteration, total=config.iters, state=state, loss=last_loss,
                               phase=config.phase(min(iteration, config.iters - 1)),
                               seconds=seconds)
        D.barrier(ctx)
        done_images = (iteration - start) * config.batch_size
        return TrainResult(state, iteration, config.iters, last_loss, seconds,
                           done_images / max(seconds, 1e-9), ema if ema is not None else model)
    except BaseException as exc:
        if ctx.is_main:
            try:
                run.write_progress(state=STATE_FAILED, error=f"{type(exc).__name__}: {exc}")
            except Exception:
                pass
        raise


def load_student(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[Student, dict]:
    """The trained student of a run (student.pt, else the last checkpoint) and its saved record."""
    from .student import student_from_state

    run = RunFolder(run_dir)
    if not run.path.is_dir():
        raise MaskCLIPError(f"run folder {run.path} does not exist; run `maskclip train` first")
    path = run.student if run.student.is_file() else run.checkpoint
    if not path.is_file():
        raise MaskCLIPError(f"{run.path} holds no trained student (no student.pt or checkpoints/last.pt); "
                            "run `maskclip train` first")
    record = load_checkpoint(path, map_location)
    try:
        student = student_from_state(record["student"], record["model"])
    except Exception as exc:  # a damaged or hand-made record: keys, types or shapes that are not a student's
        raise CheckpointError(f"{path} does not hold a usable student ({type(exc).__name__}: {str(exc)[:200]}); "
                              "train again into a new run folder") from None
    for key, kind in (("info", dict), ("classes", list), ("augment", dict)):
        if key in record and not isinstance(record[key], kind):
            raise CheckpointError(f"{path}: its '{key}' is not a {kind.__name__}; train again into a new run folder")
    return student, record

