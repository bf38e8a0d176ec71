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

from tqdm import tqdm

from .errors import ImageReadError, MaskCLIPError
from .images import list_images, read_image
from .labels_io import write_classes_json, write_index_png
from .model import DEFAULT_BACKGROUND, DEFAULT_SCALES, DEFAULT_STRIDE, DEFAULT_WINDOW, load
from .options import device_arg, int_arg, probability_arg
from .settings import parse_pretrained
from .text import parse_classes_file, prompt_rows


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model/--pretrained/--device, shared by every command that loads CLIP."""
    parser.add_argument("--model", default="ViT-B-16", help="open_clip architecture (default: ViT-B-16)")
    parser.add_argument("--pretrained", default="openai", metavar="TAG_OR_PATH", type=parse_pretrained,
                        help="open_clip weights tag (downloaded once), a local checkpoint file, or 'none' for "
                             "random weights (tests and benchmarks only) (default: openai)")
    parser.add_argument("--device", default="auto", type=device_arg,
                        help="auto (CUDA when present), cpu, cuda, cuda:1 ...")


def add_method_arguments(parser: argparse.ArgumentParser) -> None:
    """MaskCLIP settings, shared by every command that segments."""
    parser.add_argument("--key-smoothing", action=argparse.BooleanOptionalAction, default=True,
                        help="smooth class probabilities by key similarity (default: on)")
    parser.add_argument("--prompt-denoising", action=argparse.BooleanOptionalAction, default=True,
                        help="drop classes that are nowhere confident (default: on)")
    parser.add_argument("--pd-threshold", type=probability_arg("--pd-threshold"), default=0.5,
                        help="prompt denoising threshold (default 0.5)")
    parser.add_argument("--scales", type=int_arg("--scales", 1), nargs="+", default=list(DEFAULT_SCALES),
                        metavar="SHORT_SIDE",
                        help=f"short side(s) in pixels, results averaged (default {DEFAULT_SCALES[0]}; the "
                             "paper's ensemble: 224 336 520)")
    parser.add_argument("--background", nargs="*", default=list(DEFAULT_BACKGROUND), metavar="PROMPT",
                        help="background prompts merged into one 'background' label (default: "
                             f"{' '.join(DEFAULT_BACKGROUND)}); give the flag alone for none")
    parser.add_argument("--window", type=int_arg("--window", 1), default=DEFAULT_WINDOW,
                        help=f"sliding-window size in pixels after scaling (default {DEFAULT_WINDOW})")
    parser.add_argument("--stride", type=int_arg("--stride", 1), default=DEFAULT_STRIDE,
                        help=f"sliding-window stride (default {DEFAULT_STRIDE})")


def method_kwargs(args: argparse.Namespace) -> dict:
    return dict(key_smoothing=args.key_smoothing, prompt_denoising=args.prompt_denoising,
                pd_threshold=args.pd_threshold, scales=tuple(args.scales), background=tuple(args.background),
                window=args.window, stride=args.stride)


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

    model = load(args.model, args.pretrained, args.device, cache_dir=args.cache_dir)
    weights = args.pretrained if args.pretrained is not None else "random weights"
    print(f"maskclip segment: {len(images)} image(s), {args.model} ({weights}) on {model.device}", file=sys.stderr)
    kwargs = method_kwargs(args)
    start = time.perf_counter()
    model.encode_prompts(classes, kwargs["background"])  # once, before the per-image loop
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
