"""Command-line flags for the dense mode, the activation and `SegmentOptions`, shared by every command that
segments or trains (no torch here: parsing stays fast)."""
from __future__ import annotations

import argparse

from .dense_modes import per_mode_text, successor_names
from .options import DENSE_MODE_NAMES, KS_VARIANTS, SCALE_FUSIONS, SYNONYM_MERGES, option_names
from .validation import int_arg, positive_float_arg, probability_arg


def add_dense_mode_arguments(parser: argparse.ArgumentParser, default: str | None = None,
                             help_default: str | None = None) -> None:
    """--dense-mode and --quick-gelu; help_default words the default where it is not one value."""
    parser.add_argument("--dense-mode", choices=DENSE_MODE_NAMES, default=default,
                        help="last-block variant: maskclip, or the training-free successors "
                             f"{', '.join(successor_names())} (ViT models only; see the README for which to use) "
                             f"(default: {help_default or default or 'the project setting'})")
    parser.add_argument("--quick-gelu", action=argparse.BooleanOptionalAction, default=None,
                        help="force the QuickGELU activation on or off (default: from the weights: OpenAI's "
                             "use QuickGELU)")


def add_option_arguments(parser: argparse.ArgumentParser) -> None:
    """`SegmentOptions` flags; unset ones follow the dense mode's defaults (or the project's settings)."""
    parser.add_argument("--key-smoothing", action=argparse.BooleanOptionalAction, default=None,
                        help="smooth class probabilities by key similarity (default: on for maskclip only)")
    parser.add_argument("--prompt-denoising", action=argparse.BooleanOptionalAction, default=None,
                        help="drop classes that are nowhere confident (default: on for maskclip only)")
    parser.add_argument("--pd-threshold", type=probability_arg("--pd-threshold"),
                        help="prompt denoising threshold (default 0.5)")
    parser.add_argument("--ks-variant", choices=KS_VARIANTS,
                        help="key smoothing as in the paper (cosine, default) or the official code (official)")
    parser.add_argument("--ks-threshold", type=probability_arg("--ks-threshold"),
                        help="official KS: smooth only patches whose best probability is below this (default 1)")
    parser.add_argument("--temperature", type=positive_float_arg("--temperature"),
                        help=f"logit scale (default per mode: {per_mode_text('temperature')})")
    parser.add_argument("--bg-threshold", type=probability_arg("--bg-threshold"), metavar="P",
                        help="pixels whose best class probability is below P become background (default: off)")
    parser.add_argument("--synonyms", choices=SYNONYM_MERGES,
                        help="merge a class's synonyms by averaging embeddings (default) or by max probability")
    parser.add_argument("--pamr", action=argparse.BooleanOptionalAction, default=None,
                        help="PAMR refinement of the class maps along image edges (default: off)")
    parser.add_argument("--pamr-steps", type=int_arg("--pamr-steps", 0), help="PAMR iterations (default 10)")
    parser.add_argument("--pamr-dilations", type=int_arg("--pamr-dilations", 1), nargs="+", metavar="D",
                        help="PAMR dilations (default 8 16)")
    parser.add_argument("--scale-fusion", choices=SCALE_FUSIONS,
                        help="several scales: mean of probabilities (default) or softmax1 (official aug_test)")
    parser.add_argument("--window", type=int_arg("--window", 1),
                        help="sliding-window size in pixels after scaling (default per mode: 768 maskclip, 224 "
                             "the others)")
    parser.add_argument("--stride", type=int_arg("--stride", 1),
                        help="sliding-window stride (default per mode: 512 / 112)")
    parser.add_argument("--window-norm", action=argparse.BooleanOptionalAction, default=None,
                        help="L2-normalise each window's features before averaging overlaps (default: on for "
                             "the successor modes)")


def option_kwargs(args: argparse.Namespace) -> dict:
    """The `SegmentOptions` fields given on the command line."""
    return {name: getattr(args, name) for name in option_names() if getattr(args, name, None) is not None}
