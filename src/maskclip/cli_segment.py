"""`maskclip segment`: label images or folders with MaskCLIP and write one indexed PNG per image.

Each `OUT/<stem>.png` holds the class index (classes-file order, then "background" when background prompts
are in use and no class is called "background"); `OUT/classes.json` names the indices. A file that cannot
be read is reported and skipped, the others are still written, and the exit code is then 1.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import ImageReadError, MaskCLIPError
from .cli_options import add_dense_mode_arguments, add_option_arguments, option_kwargs
from .defaults import (DEFAULT_BACKGROUND, DEFAULT_DENSE_MODE, DEFAULT_DEVICE, DEFAULT_MODEL, DEFAULT_PRETRAINED,
                       DEFAULT_SCALES)
from .settings import parse_pretrained
from .prompts import parse_classes_file, prompt_rows
from .validation import device_arg, int_arg


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model/--pretrained/--device/--dense-mode/--quick-gelu, shared by every command that loads CLIP."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"open_clip architecture (default: {DEFAULT_MODEL})")
    parser.add_argument("--pretrained", default=DEFAULT_PRETRAINED, metavar="TAG_OR_PATH", type=parse_pretrained,
                        help="open_clip weights tag (downloaded once), a local checkpoint file, or 'none' for "
                             "random weights (tests and benchmarks only) "
                             f"(default: {DEFAULT_PRETRAINED})")
    parser.add_argument("--device", default=DEFAULT_DEVICE, type=device_arg,
                        help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    add_dense_mode_arguments(parser, default=DEFAULT_DENSE_MODE)


def add_method_arguments(parser: argparse.ArgumentParser) -> None:
    """Scales, background prompts and segmentation options, for commands that segment plain images."""
    parser.add_argument("--scales", type=int_arg("--scales", 1), nargs="+", default=list(DEFAULT_SCALES),
                        metavar="SHORT_SIDE",
                        help=f"short side(s) in pixels, results averaged (default {DEFAULT_SCALES[0]}; the "
                             "paper's ensemble: 224 336 520)")
    parser.add_argument("--background", nargs="*", default=list(DEFAULT_BACKGROUND), metavar="PROMPT",
                        help="background prompts merged into one 'background' label (default: "
                             f"{' '.join(DEFAULT_BACKGROUND)}); give the flag alone for none")
    add_option_arguments(parser)


def method_kwargs(args: argparse.Namespace) -> dict:
    return dict(scales=tuple(args.scales), background=tuple(args.background), dense_mode=args.dense_mode,
                **option_kwargs(args))


def register(subparsers) -> None:
    p = subparsers.add_parser("segment", help="label images with MaskCLIP (indexed PNGs + classes.json)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--classes-file", required=True, metavar="F",
                   help="one class per line, synonyms comma-separated (e.g. 'car, automobile')")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--recursive", action="store_true", help="also look into sub-folders")
    p.add_argument("--cache-dir", metavar="DIR", help="keep dense features on disk for later runs")
    add_model_arguments(p)
    add_method_arguments(p)
    p.set_defaults(func=run)


def _unique_stems(images: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in images:
        if path.stem in seen:
            raise MaskCLIPError(f"{seen[path.stem]} and {path} would both be written as {path.stem}.png; "
                                f"segment them into separate --out folders")
        seen[path.stem] = path


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .images import list_images, read_image
    from .labels_io import write_classes_json, write_index_png

    classes = parse_classes_file(args.classes_file)
    prompt_rows(classes, args.background)  # the class limit, before any work
    not_files: list[tuple[Path, str]] = []
    images = list_images(args.inputs, recursive=args.recursive, skipped=not_files)
    for path, reason in not_files:
        print(f"maskclip segment: skipped {path}: {reason}", file=sys.stderr)
    if not images:
        raise MaskCLIPError(f"no images found in {' '.join(args.inputs)}")
    _unique_stems(images)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MaskCLIPError(f"cannot create output folder {out}: {exc.strerror or exc}") from None

    from .model import load

    model = load(args.model, args.pretrained, args.device, dense_mode=args.dense_mode, quick_gelu=args.quick_gelu,
                 cache_dir=args.cache_dir)
    weights = args.pretrained if args.pretrained is not None else "random weights"
    print(f"maskclip segment: {len(images)} image(s), {args.model} ({weights}) on {model.device}", file=sys.stderr)
    kwargs = method_kwargs(args)
    start = time.perf_counter()
    _, options = model.options(args.dense_mode, **option_kwargs(args))  # checks the options before any work
    model.encode_prompts(classes, kwargs["background"], options.synonyms == "max")
    print(f"maskclip segment: class prompts embedded in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    failed, class_names, start = [p for p, _ in not_files], None, time.perf_counter()
    for path in tqdm(images, desc="segment", unit="img", file=sys.stderr):
        try:  # one bad image (unreadable, 5 channels, ...) is reported and skipped; the batch goes on
            seg = model.segment(read_image(path), classes, **kwargs)
        except ImageReadError as exc:
            tqdm.write(f"skipped: {exc if str(path) in str(exc) else f'{path}: {exc}'}", file=sys.stderr)
            failed.append(path)
            continue
        write_index_png(out / f"{path.stem}.png", seg.labels)
        class_names = seg.class_names
    if class_names is not None:
        write_classes_json(out / "classes.json", class_names)
    done = len(images) - len(failed) + len(not_files)
    print(f"maskclip segment: wrote {done} label image(s) to {out} in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)
    if failed:
        print(f"maskclip segment: {len(failed)} of {len(images) + len(not_files)} image(s) skipped (named above)",
              file=sys.stderr)
        return 1
    return 0
