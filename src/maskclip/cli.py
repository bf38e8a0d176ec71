"""Command-line entry point: `maskclip <command> ...` (also `python -m maskclip`).

Each command lives in its own module exposing `register(subparsers)`; that function adds an argparse
sub-parser whose `func(args) -> int` default runs the command. Errors derived from MaskCLIPError are
printed as one line (no traceback) and give exit code 2.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from .errors import MaskCLIPError


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; builds without importing torch (models load when a command runs)."""
    from . import __version__, cli_segment, cli_eval, cli_project, cli_train

    parser = argparse.ArgumentParser(prog="maskclip", description="MaskCLIP dense labelling assistant.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (cli_segment, cli_eval, cli_project, cli_train):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # open_clip logs its failures at ERROR on the root logger; our messages already say what went wrong
    # and how to fix it. MASKCLIP_DEBUG=1 shows everything.
    logging.basicConfig(level=logging.DEBUG if os.environ.get("MASKCLIP_DEBUG") else logging.CRITICAL)
    try:
        return int(args.func(args) or 0)
    except MaskCLIPError as exc:
        print(f"maskclip {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `maskclip eval ... | head`: the reader has all it wanted
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"maskclip {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
