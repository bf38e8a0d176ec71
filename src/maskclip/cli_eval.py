"""`maskclip eval`: score a folder of predicted label images against ground truth.

The JSON result goes to stdout (for scripts), the readable table to stderr (for people).
"""
from __future__ import annotations

import argparse
import json
import sys

from .defaults import UNLABELLED


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="mIoU / pixel accuracy of predicted label images against ground truth",
        description="Compare label images (value = class index, files matched by name stem) in --pred "
        "with those in --gt. Prints a JSON object on stdout and a table on stderr. A missing prediction "
        "counts every labelled pixel of its ground truth as a miss.",
    )
    p.add_argument("--pred", required=True, metavar="DIR", help="folder of predicted label images")
    p.add_argument("--gt", required=True, metavar="DIR", help="folder of ground-truth label images")
    p.add_argument("--classes-json", required=True, metavar="F", help='classes file ({"classes": [...]})')
    p.add_argument(
        "--ignore-index",
        type=int,
        default=None,
        metavar="N",
        help=f"ground-truth value not scored (default: the classes file's ignore_index, else {UNLABELLED})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .labels_io import read_classes_json
    from .metrics import evaluate_folders, format_table

    classes = read_classes_json(args.classes_json)
    ignore = classes["ignore_index"] if args.ignore_index is None else args.ignore_index
    result = evaluate_folders(args.pred, args.gt, classes["classes"], ignore_index=ignore)
    print(format_table(result), file=sys.stderr)
    if result["missing"]:
        shown = ", ".join(result["missing_files"][:5]) + (", ..." if result["missing"] > 5 else "")
        print(f"warning: {result['missing']} prediction(s) missing, scored as misses: {shown}", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0
