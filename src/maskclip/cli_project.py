"""`maskclip project init|import-labels|status|segment|accept-changes` and `maskclip export` (projects)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .defaults import DEFAULT_DEVICE, UNLABELLED
from .cli_options import add_dense_mode_arguments, add_option_arguments, option_kwargs
from .errors import MaskCLIPError
from .validation import device_arg, int_arg, probability_arg


def register(subparsers) -> None:
    project = subparsers.add_parser("project", help="create and inspect annotation projects",
                                    description="Annotation projects: images, classes, labels, verified pixels.")
    sub = project.add_subparsers(dest="project_command", required=True)

    p = sub.add_parser("init", help="create a project from a folder of images")
    p.add_argument("dir", type=Path, help="new (or empty) project folder")
    p.add_argument("--images", type=Path, nargs="+", required=True, help="image folder(s) and/or files")
    p.add_argument("--classes-file", type=Path,
                   help="classes: a text file (one class per line, synonyms comma-separated), a classes.json or a "
                        "JSON list of names / lists of synonyms")
    p.add_argument("--reference", action="store_true", help="reference the images where they are (default: copy)")
    p.add_argument("--recursive", action="store_true", help="also take images in sub-folders")
    p.add_argument("--background", help="comma-separated background prompts (default: MaskCLIP's list)")
    p.set_defaults(func=_init)

    p = sub.add_parser("import-labels", help="import label images named like the project's images")
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("labels", type=Path,
                   help=f"folder of label images (PNG/TIFF, values = class indices, {UNLABELLED} = unlabelled), "
                        "a VOC or index export, or a COCO annotations.json")
    p.add_argument("--verified", action="store_true",
                   help="the labels are ground truth: mark every labelled pixel verified (replaces labels)")
    p.add_argument("--format", default="auto", choices=("auto", "voc", "coco", "index"))
    p.set_defaults(func=_import_labels)

    p = sub.add_parser("status", help="images, labelled, verified fraction, per-class pixel counts")
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=_status)

    p = sub.add_parser("segment", help="label the project's images with MaskCLIP (verified pixels are kept)",
                       description="Labels the project's images with MaskCLIP; verified pixels are kept. Under "
                                   "`torchrun --nproc-per-node N -m maskclip project segment ...` each process "
                                   "segments every N-th image (one GPU each, or CPU processes with gloo) and rank 0 "
                                   "prints the summary.")
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("--model", help="open_clip architecture (default: the project's setting)")
    p.add_argument("--pretrained", help="open_clip tag or checkpoint file; 'none' = random weights")
    p.add_argument("--device", default=DEFAULT_DEVICE, type=device_arg)
    p.add_argument("--scales", type=int_arg("--scales", 1), nargs="+",
                   help="short sides of the multi-scale ensemble")
    add_dense_mode_arguments(p)
    add_option_arguments(p)
    p.add_argument("--min-confidence", type=probability_arg("--min-confidence"), default=0.0,
                   help=f"pixels whose top probability is below this stay unlabelled ({UNLABELLED})")
    p.add_argument("--only-unlabelled", action="store_true", help="skip images that already have labels")
    p.add_argument("--learn-from-verified", action=argparse.BooleanOptionalAction, default=None,
                   help="learn from the project's verified pixels (default: the project's 'learn' setting, off)")
    p.add_argument("--learner", choices=("text-prior", "prototypes"),
                   help="text-prior: a classifier started at and pulled toward the class text (default); "
                        "prototypes: class-mean prototypes blended with --weight (kept for comparison)")
    p.add_argument("--weight", type=probability_arg("--weight"),
                   help="prototypes only: weight of the visual term in [0, 1] (default: the project's setting, 0.5)")
    p.add_argument("--image", dest="image_ids", action="append", help="only this image id (repeatable)")
    p.add_argument("--no-amp", action="store_true",
                   help="full precision on CUDA (default: bfloat16 / float16 autocast; the CPU is always float32)")
    p.set_defaults(func=_segment)

    p = sub.add_parser("accept-changes", help="take the new content of images whose files changed (stale images)",
                       description="An image whose file changed since it was labelled is 'stale': its labels are "
                                   "not applied. This makes the new content the project's; the old labels are "
                                   "cleared (kept in each image's history) unless --keep-labels.")
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("image_ids", nargs="*", metavar="IMAGE_ID", help="stale images to accept (default: all stale)")
    p.add_argument("--keep-labels", action="store_true",
                   help="keep the labels for the new content (only for images whose size did not change)")
    p.set_defaults(func=_accept_changes)

    e = subparsers.add_parser("export", help="export a project's labels as a dataset (voc, coco, index)")
    e.add_argument("dir", type=Path, help="project folder")
    e.add_argument("--format", required=True, choices=("voc", "coco", "index"))
    e.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    e.add_argument("--verified-only", action="store_true", help=f"only verified pixels (others {UNLABELLED})")
    e.add_argument("--no-images", dest="images", action="store_false", help="write labels only")
    e.add_argument("--val-fraction", type=probability_arg("--val-fraction"), default=0.1,
                   help="VOC: share of images in val.txt")
    e.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    e.set_defaults(func=_export)


def _read_classes(path: Path) -> list:
    from .prompts import read_classes_file

    return read_classes_file(path)


def _init(args) -> int:
    from .project import Project

    classes = _read_classes(args.classes_file) if args.classes_file else []
    background = None if args.background is None else [b.strip() for b in args.background.split(",") if b.strip()]
    project = Project.create(args.dir, args.images, classes, copy=not args.reference, recursive=args.recursive,
                             background=background)
    print(f"created project {args.dir}: {len(project)} images, {len(project.class_names)} classes")
    for path, reason in project.skipped_images:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return 1 if project.skipped_images else 0


def _import_labels(args) -> int:
    from .project import Project

    project = Project.open(args.dir)
    report = project.import_labels(args.labels, verified=args.verified, format=args.format)
    for name in report.new_classes:
        print(f"added class {name!r} (named by the label set)")
    for image_id, reason in report.skipped:
        print(f"skipped {image_id}: {reason}", file=sys.stderr)
    print(f"imported labels for {len(report.added)} of {len(project)} images"
          f"{' as verified' if args.verified else ''}; {len(report.missing)} without a label file, "
          f"{len(report.skipped)} skipped")
    if not report.added and not report.skipped:
        raise MaskCLIPError(f"no label file in {args.labels} matched an image of the project")
    if not report.added:
        raise MaskCLIPError(f"{len(report.skipped)} label file(s) in {args.labels} matched images of the project "
                            "but none could be imported (reasons above)")
    return 1 if report.skipped else 0


def _status(args) -> int:
    from .project import Project

    status = Project.open(args.dir).status()
    if args.json:
        print(json.dumps(status, indent=1))
        return 1 if status["broken"] else 0
    print(f"project {status['project']}")
    print(f"images: {status['images']}  labelled: {status['labelled']}  fully verified: {status['verified_images']}"
          f"  stale: {len(status['stale'])}  skipped at import: {len(status['skipped_at_import'])}")
    print(f"labelled pixels: {status['labelled_fraction']:.1%}  verified pixels: {status['verified_fraction']:.1%}")
    width = max([len(n) for n in status["classes"]] + [5])
    print(f"{'class':<{width}}  {'pixels':>12}  {'verified':>12}")
    for name in status["classes"]:
        print(f"{name:<{width}}  {status['class_pixels'][name]:>12}  {status['class_verified_pixels'][name]:>12}")
    for image_id in status["stale"]:
        print(f"stale (file changed since labelling, labels not applied): {image_id}")
    for item in status["broken"]:
        print(f"broken labels: {item['id']}: {item['problem']}")
    return 1 if status["broken"] else 0


def _accept_changes(args) -> int:
    from .project import Project

    project = Project.open(args.dir)
    stale = [i for i in project.image_ids if project.is_stale(i)]
    wanted = args.image_ids or stale
    unknown = [i for i in wanted if i not in project]
    if unknown:
        raise MaskCLIPError(f"no image {unknown[0]!r} in project {args.dir}")
    accepted, failed = 0, 0
    for image_id in wanted:
        if image_id not in stale:
            print(f"{image_id}: not stale, nothing to accept", file=sys.stderr)
            continue
        try:
            project.accept_image_change(image_id, keep_labels=args.keep_labels)
            accepted += 1
        except MaskCLIPError as exc:  # e.g. the file vanished, or --keep-labels with a new size
            print(f"{image_id}: {exc}", file=sys.stderr)
            failed += 1
    print(f"accepted the new content of {accepted} image(s)"
          f"{' (labels kept)' if args.keep_labels else ' (earlier labels are in their history)'}"
          f"{f'; {failed} could not be accepted' if failed else ''}")
    return 1 if failed else 0


def _segment(args) -> int:
    """Segment the project's images; under torchrun each process takes a shard of them (`_segment_shard`) and
    rank 0 prints the run's summary. Every process merges its own images (the store takes concurrent writers)."""
    from .train import distributed as D

    ctx = D.setup(args.device)
    try:
        try:
            result, error = _segment_shard(args, ctx), None
        except MaskCLIPError as exc:  # told to every rank, so none waits for a process that gave up
            if not ctx.distributed:
                raise
            result, error = None, str(exc)
        outcomes = D.gather((result, error), ctx)
    finally:
        D.cleanup(ctx)
    if not ctx.is_main:  # rank 0 reports and exits with the run's code; a non-zero exit here would make torchrun
        return 0         # stop rank 0 (SIGTERM) before it has said what went wrong
    errors = [(rank, e) for rank, (_, e) in enumerate(outcomes) if e is not None]
    for message in dict.fromkeys(e for _, e in errors):  # one line per distinct error, naming its processes
        ranks = [str(rank) for rank, e in errors if e == message]
        print(f"maskclip project segment: error on process {', '.join(ranks)} of {ctx.world_size}: {message}",
              file=sys.stderr)
    done = [r for r, _ in outcomes if r is not None]
    failed = [i for r in done for i in r["failed"]]
    if done:
        where = f" on {len(done)} of {ctx.world_size} processes" if errors else \
            f" on {ctx.world_size} processes" if ctx.distributed else ""
        print(f"segmented {sum(r['merged'] for r in done)} images{where} ({sum(r['skipped'] for r in done)} skipped: "
              f"stale or already labelled{f'; {len(failed)} failed: ' + ', '.join(failed) if failed else ''})")
    if errors and done:  # some shards were done, the others not
        print("maskclip project segment: the images of the processes that stopped were not segmented; "
              "--only-unlabelled segments only those when the command runs again", file=sys.stderr)
    if errors:
        return 2
    return 1 if failed else 0


def _segment_shard(args, ctx) -> dict:
    """This process's share of `project segment` (all images in a single process): counts and failed ids."""
    from .batch import FAILED, MERGED, Prediction, run_batch
    from .project import Project
    from .settings import clip_spec, learn_spec
    from .prompts import prompt_rows
    from .train import distributed as D
    from .train.project_run import load_clip_model

    project = Project.open(args.dir)
    if not project.class_names:
        raise MaskCLIPError(f"project {args.dir} has no classes; add some first (project init --classes-file)")
    spec = clip_spec(project, args.model, args.pretrained, args.dense_mode, args.quick_gelu, option_kwargs(args))
    learn = learn_spec(project.settings, args.learn_from_verified, args.weight, args.learner)
    options = spec["segment"]
    if args.scales is not None:
        options["scales"] = args.scales
    options["scales"] = tuple(options["scales"])
    prompt_rows(project.prompts, options["background"])  # the class limit, before any work
    ids = args.image_ids or project.image_ids
    unknown = [i for i in ids if i not in project]
    if unknown:
        raise MaskCLIPError(f"no image {unknown[0]!r} in project {args.dir}")
    mine = D.shard(ids, ctx)
    # seeded: random weights (--pretrained none) are the same in every process, as in `train`
    model = load_clip_model(spec, ctx.device, project.cache_dir, precision="float32" if args.no_amp else "auto")
    if learn["from_verified"]:  # every process learns the same term from all verified pixels
        options["learned"] = _learn_from_verified(model, project, options, learn, quiet=not ctx.is_main)
    if ctx.distributed and ctx.is_main:
        print(f"segmenting {len(ids)} images on {ctx.world_size} processes; progress of process 0's "
              f"{len(mine)}:", flush=True)
    tag = f"process {ctx.rank}: " if ctx.distributed else ""

    def predict(image_id: str) -> Prediction:
        seg = model.segment(project.get_image(image_id), project.prompts, **options)
        return Prediction(seg.labels, seg.probs.max(axis=0), seg.class_names, seg)

    def report(outcome, so_far) -> None:
        if outcome.status == FAILED:  # one bad image or label file is reported and skipped; the batch goes on
            print(f"{tag}skipped {outcome.image_id}: {outcome.error}", file=sys.stderr, flush=True)
        elif outcome.status == MERGED and ctx.is_main:
            print(f"[{len(so_far.merged)}/{len(mine)}] {outcome.image_id}", flush=True)

    result = run_batch(project, mine, predict, source=f"maskclip {model.model_name}",
                       min_confidence=args.min_confidence, on_outcome=report,
                       skip=lambda i: project.is_stale(i) or (args.only_unlabelled and project.has_labels(i)))
    project.flush()
    return {"merged": len(result.merged), "skipped": len(result.skipped), "failed": [i for i, _ in result.failed]}


def _learn_from_verified(model, project, options: dict, learn: dict, quiet: bool = False):
    """The term learned from every verified pixel of the project (maskclip.learner), on the same features
    `segment` will use (scales, windows, dense mode)."""
    from .learner import project_learner

    learner = project_learner(learn["learner"], options)
    read = learner.sync(model, project)
    known = learner.known()
    how = f"weight {learn['weight']}" if learn["learner"] == "prototypes" else "text as the prior"
    if not quiet:
        print(f"learned ({learn['learner']}) from the verified pixels of {read} images: {len(known)} classes "
              f"({', '.join(known) or 'none yet'}), {how}", flush=True)
    return learner.term(learn["weight"])


def _export(args) -> int:
    from .export import export_project
    from .project import Project

    project = Project.open(args.dir)
    report = export_project(project, args.out, args.format, verified_only=args.verified_only, images=args.images,
                            val_fraction=args.val_fraction, overwrite=args.overwrite)
    for image_id, reason in report.skipped:
        print(f"skipped {image_id}: {reason}", file=sys.stderr)
    print(f"exported {len(report.exported)} images as {args.format} to {args.out}"
          f"{f' ({len(report.skipped)} skipped)' if report.skipped else ''}")
    return 1 if report.skipped else 0
