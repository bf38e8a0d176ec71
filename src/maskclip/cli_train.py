"""`maskclip train` (MaskCLIP+ student on a project) and `maskclip refine` (student -> project labels).

Both run as ordinary processes (the napari widget launches them and watches RUN_DIR/progress.json);
`train` also runs under `torchrun --nproc-per-node N -m maskclip train PROJECT --run-dir RUN_DIR ...`
(DistributedDataParallel; `--run-dir` is `--run`'s spelling that torchrun's parser leaves alone).
Exit codes: 0 done, 2 a user error (one-line message), 130 cancelled (SIGINT/SIGTERM; a checkpoint was
written and `--resume` continues).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli_options import add_dense_mode_arguments, add_option_arguments, option_kwargs
from .defaults import (CLIP_STUDENT_TRAIN_DEFAULTS as CLIP_DEFAULTS, DEFAULT_DEVICE, REFINE_MIN_CONFIDENCE,
                       TORCHVISION_STUDENT_TRAIN_DEFAULTS as TV_DEFAULTS)
from .validation import device_arg, int_arg, positive_float_arg, probability_arg

# option -> (TrainConfig field, or "augment.<field>")
_TRAIN_OPTIONS = {
    "iters": "iters", "batch_size": "batch_size", "student": "student", "lr": "lr", "seed": "seed",
    "guided_fraction": "guided_fraction", "self_train_start": "self_train_start",
    "confidence_threshold": "confidence_threshold", "self_train_threshold": "self_train_threshold",
    "checkpoint_every": "checkpoint_every", "log_every": "log_every", "workers": "num_workers",
    "crop_size": "augment.crop_size", "base_size": "augment.base_size",
    "optimizer": "optimizer", "freeze_blocks": "freeze_blocks", "confidence_keep": "confidence_keep",
    "ema_decay": "ema_decay", "self_train_keep_teacher": "self_train_keep_teacher",
    "self_train_balance": "self_train_balance", "clip_decoder": "clip_decoder", "clip_dense_mode": "clip_dense_mode",
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a MaskCLIP+ student on a project (pseudo labels + verified pixels)",
        description="Computes the teacher's pseudo labels for every image of PROJECT (cached in RUN_DIR; "
        f"the teacher is the {CLIP_DEFAULTS['teacher_mode']} dense mode for the clip student, the best training-free mode "
        "measured, and the project's dense mode for the others; --dense-mode chooses), then "
        "trains a DeepLab student whose classifier is the classes' CLIP text embeddings: first on the "
        "pseudo labels (guided phase), then on its own predictions (self-training). Verified pixels are "
        "ground truth throughout. RUN_DIR receives config.json, progress.json, metrics.jsonl, "
        "checkpoints/last.pt and student.pt. Under torchrun it trains with DistributedDataParallel.")
    p.add_argument("project", metavar="PROJECT", help="project folder (maskclip project init)")
    p.add_argument("--run", "--run-dir", dest="run", required=True, metavar="RUN_DIR",
                   help="run folder (created if missing). Under torchrun write --run-dir: torchrun's own "
                   "parser reads --run as an abbreviation of its --run-path")
    p.add_argument("--iters", type=int_arg("--iters", 1), metavar="N", help=f"training iterations (default: {CLIP_DEFAULTS['iters']} for the clip student, "
                   f"{TV_DEFAULTS['iters']} for the others)")
    p.add_argument("--batch-size", type=int_arg("--batch-size", 1), metavar="B",
                   help=f"global batch size, split over processes (default: {CLIP_DEFAULTS['batch_size']} for the clip "
                   f"student, {TV_DEFAULTS['batch_size']} for the others)")
    p.add_argument("--student", metavar="NAME",
                   help="auto (ResNet-101 DeepLabV3 on GPU, clip on CPU), clip (the teacher's own CLIP "
                   "image tower, fine-tuned: no download), deeplabv3_resnet101, deeplabv3_resnet50, "
                   "deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large")
    p.add_argument("--optimizer", choices=("auto", "sgd", "adamw"),
                   help="auto (default): AdamW for the clip student, SGD with momentum for the others")
    p.add_argument("--freeze-blocks", type=int_arg("--freeze-blocks", 0), metavar="N",
                   help="clip student: freeze the patch embedding and the first N blocks (default 0: end to end)")
    p.add_argument("--device", default=DEFAULT_DEVICE, type=device_arg,
                   help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--model", metavar="NAME", help="CLIP architecture for the pseudo labels (default: the project's)")
    p.add_argument("--pretrained", metavar="TAG_OR_PATH",
                   help="CLIP weights: open_clip tag, checkpoint file, or 'none' for random (default: the project's)")
    add_dense_mode_arguments(p, help_default=f"{CLIP_DEFAULTS['teacher_mode']} for the clip student, the best "
                             "training-free mode measured (bench/results.md); the project setting for the others")
    add_option_arguments(p)
    p.add_argument("--resume", action="store_true",
                   help="continue from RUN_DIR/checkpoints/last.pt with the run's saved settings")
    p.add_argument("--lr", type=positive_float_arg("--lr"), help="initial learning rate (default 1e-4 with AdamW, 0.01 with SGD; poly decay)")
    p.add_argument("--crop-size", type=int_arg("--crop-size", 1), metavar="PX", help="training crop side (default 512)")
    p.add_argument("--base-size", type=int_arg("--base-size", 1), metavar="PX",
                   help="short image side at scale 1 before random scaling 0.5-2 (default 512)")
    p.add_argument("--guided-fraction", type=probability_arg("--guided-fraction"), metavar="F",
                   help="share of the iterations trained on MaskCLIP labels before self-training (default: 0.1 "
                        "for a torchvision student with ImageNet weights; 1.0 = no self-training for the clip student "
                        "and without ImageNet weights)")
    p.add_argument("--self-train-start", type=int_arg("--self-train-start", 0), metavar="N",
                   help="self-training starts at this iteration")
    p.add_argument("--confidence-threshold", type=probability_arg("--confidence-threshold"), metavar="P",
                   help="ignore pixels whose MaskCLIP probability is below P (default: keep all)")
    p.add_argument("--self-train-threshold", type=probability_arg("--self-train-threshold"), metavar="P",
                   help="ignore pixels whose student probability is below P while self-training")
    p.add_argument("--confidence-keep", type=probability_arg("--confidence-keep"), metavar="F",
                   help="per class, train only on the teacher's most confident share F of the pixels it gave that "
                   f"class (class-balanced thresholds; default: {CLIP_DEFAULTS['confidence_keep']:g} for the clip student, "
                   "measured best on the toy CLIP; 1 (keep all) for the others)")
    p.add_argument("--ema-decay", type=probability_arg("--ema-decay"), metavar="D",
                   help="mean teacher: keep an exponential moving average of the weights (decay D, e.g. 0.99); "
                   f"it labels the self-training phase and is the trained student (default: {CLIP_DEFAULTS['ema_decay']:g} "
                   "for the clip student, none for the others; 0 turns it off in effect)")
    p.add_argument("--self-train-keep-teacher", action="store_const", const=True,
                   help="while self-training, pixels the teacher labelled (above the confidence bars) keep its label")
    p.add_argument("--self-train-balance", type=probability_arg("--self-train-balance"), metavar="F",
                   help="class-balanced self-training (CBST): per class, the most confident share F of its pixels "
                   "sets the bar that class's probabilities are divided by")
    p.add_argument("--clip-decoder", metavar="NAME",
                   help="clip student: light (default; 2x the patch grid) or guided (sees the image at 1/2 "
                   "resolution; slower)")
    p.add_argument("--clip-dense-mode", metavar="MODE",
                   help="clip student: its tower's dense mode (default: the teacher's --dense-mode)")
    p.add_argument("--checkpoint-every", type=int_arg("--checkpoint-every", 1), metavar="K",
                   help="checkpoint interval (default 200)")
    p.add_argument("--log-every", type=int_arg("--log-every", 1), metavar="K",
                   help="metrics/progress interval (default 10)")
    p.add_argument("--workers", type=int_arg("--workers", 0), metavar="N",
                   help="data-loading worker processes (default 0)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--no-imagenet", action="store_true",
                   help="random backbone initialisation (skip the ImageNet weights download)")
    p.add_argument("--no-amp", action="store_true",
                   help="full precision on CUDA (training and the MaskCLIP pseudo labels)")
    p.set_defaults(func=run_train)

    r = subparsers.add_parser(
        "refine", help="update a project's labels with a trained MaskCLIP+ student",
        description="Predicts every image of PROJECT with RUN_DIR's student and merges the predictions into "
        "the labels. Verified pixels never change; each image's previous labels stay in its history "
        "(restore them with the project's restore_revision). Prints a JSON summary.")
    r.add_argument("project", metavar="PROJECT")
    r.add_argument("--run", "--run-dir", dest="run", required=True, metavar="RUN_DIR")
    r.add_argument("--device", default=DEFAULT_DEVICE, type=device_arg)
    r.add_argument("--min-confidence", type=probability_arg("--min-confidence"), default=REFINE_MIN_CONFIDENCE,
                   metavar="P", help="pixels the student is less sure about become unlabelled (default "
                   f"{REFINE_MIN_CONFIDENCE:g}, chosen on the toy CLIP: bench/bench_refine_confidence.py)")
    r.add_argument("--no-amp", action="store_true",
                   help="full precision on CUDA (default: bfloat16 / float16 autocast; the CPU is always float32)")
    r.set_defaults(func=run_refine)


def _config(args):
    from .train.loop import RunFolder, TrainConfig

    run = RunFolder(args.run)
    if args.resume:  # the run's own settings (no config.json: nothing to resume, never silently the defaults)
        config = TrainConfig.from_json(run.config)
    else:
        config = TrainConfig()
    for option, target in _TRAIN_OPTIONS.items():
        value = getattr(args, option)
        if value is None:
            continue
        obj, name = (config.augment, target.split(".", 1)[1]) if target.startswith("augment.") else (config, target)
        setattr(obj, name, value)
    if args.no_imagenet:
        config.imagenet_backbone = False
    if args.no_amp:
        config.amp = False
    return config


def run_train(args: argparse.Namespace) -> int:
    from .outputs import check_run_folder
    from .train.project_run import train_project

    if args.resume:  # a damaged config.json is named as such (before the run-folder check calls it foreign)
        from .run_folder import RunFolder, read_config

        read_config(RunFolder(args.run).config)
    check_run_folder(args.run)  # a new, empty or run folder: never overwrite another folder's config.json
    config = _config(args)
    result = train_project(args.project, args.run, config, model=args.model, pretrained=args.pretrained,
                           dense_mode=args.dense_mode, quick_gelu=args.quick_gelu, options=option_kwargs(args),
                           device=args.device, resume=args.resume,
                           log=lambda msg: print(f"maskclip train: {msg}", file=sys.stderr, flush=True))
    if result.state == "cancelled":
        print(f"maskclip train: cancelled at iteration {result.iteration}/{result.total}; "
              f"continue with --resume", file=sys.stderr)
        return 130
    print(f"maskclip train: done, {result.iteration} iterations, {result.images_per_s:.2f} images/s; "
          f"student in {Path(args.run) / 'student.pt'}", file=sys.stderr)
    return 0


def run_refine(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .train.project_run import refine_project

    bar = None  # created at the first report, once the run and the project have been checked

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(desc="refine", unit="image", total=total, file=sys.stderr)
        bar.update(done - bar.n)

    try:
        summary = refine_project(args.project, args.run, device=args.device, min_confidence=args.min_confidence,
                                 precision="float32" if args.no_amp else "auto",
                                 log=lambda msg: print(f"maskclip refine: {msg}", file=sys.stderr),
                                 progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(json.dumps(summary))
    return 1 if summary["failed"] else 0
