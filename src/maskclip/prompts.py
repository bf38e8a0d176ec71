"""Class lists and how they become prompt rows: validation, the classes-file format (one class per line,
synonyms comma-separated) and the row layout shared by MaskCLIP and the MaskCLIP+ student.

No torch here: the command line and the project store parse classes files without loading a model
(the text encoder itself is maskclip.text).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from .defaults import MAX_CLASSES, UNLABELLED
from .errors import MaskCLIPError

ClassSpec = str | Sequence[str]
MAX_OUTPUT_CLASSES = MAX_CLASSES  # label value 255 means unlabelled, so class indices end at 254


def normalize_classes(classes: Iterable[ClassSpec], what: str = "class") -> list[tuple[str, ...]]:
    """Validated classes as tuples of stripped names; blank or duplicate names are errors, not surprises."""
    if isinstance(classes, str):
        raise MaskCLIPError(f"{what} list must be a list of names, not the single string {classes!r}")
    result: list[tuple[str, ...]] = []
    seen: dict[str, int] = {}
    for index, spec in enumerate(classes):
        names = (spec,) if isinstance(spec, str) else tuple(spec)
        names = tuple(str(n).strip() for n in names)
        if not names or any(not n for n in names):
            raise MaskCLIPError(f"{what} {index + 1} has an empty or blank name: {spec!r}")
        for name in names:
            folded = name.casefold()
            if folded in seen:
                raise MaskCLIPError(
                    f"duplicate {what} name '{name}' (entries {seen[folded] + 1} and {index + 1}); names must be "
                    f"unique, ignoring case")
            seen[folded] = index
        result.append(names)
    return result


def prompt_rows(classes: Iterable[ClassSpec], background: Iterable[str], split_synonyms: bool = False
                ) -> tuple[list[list[str]], list[int], list[str], int | None]:
    """How classes and background prompts become text-embedding rows and output classes (MaskCLIP's
    `segment` and the MaskCLIP+ student's classifier both follow it).

    Returns (rows: the names of each row, row_class: the output class of each row, class names,
    index of the background class or None). User classes come first, in order; background prompts that
    no user class already names become extra rows merged (max) into the user class called "background"
    or, when there is none, into an appended "background" class. `split_synonyms` gives each synonym its
    own row (merged by max like the background prompts, as SCLIP / ClearCLIP / NACLIP do) instead of one
    row averaging the class's names.
    """
    user = normalize_classes(classes)
    if not user:
        raise MaskCLIPError("no classes given")
    taken = {n.casefold() for names in user for n in names}
    bg = [n for (n,) in normalize_classes([[b] for b in background], what="background prompt")
          if n.casefold() not in taken]
    if split_synonyms:
        rows = [[n] for names in user for n in names]
        row_class = [c for c, names in enumerate(user) for _ in names]
    else:
        rows = [list(names) for names in user]
        row_class = list(range(len(user)))
    names = [names[0] for names in user]
    bg_index = next((i for i, ns in enumerate(user) if any(n.casefold() == "background" for n in ns)), None)
    if bg:
        if bg_index is None:
            bg_index = len(names)
            names.append("background")
        rows += [[b] for b in bg]
        row_class += [bg_index] * len(bg)
    if len(names) > MAX_OUTPUT_CLASSES:
        raise MaskCLIPError(
            f"{len(names)} classes{' (with background)' if bg and bg_index == len(names) - 1 else ''}; label images "
            f"hold at most {MAX_OUTPUT_CLASSES} (indices 0..{UNLABELLED - 1}, {UNLABELLED} = unlabelled): "
            f"use at most {MAX_OUTPUT_CLASSES - 1} classes plus background")
    return rows, row_class, names, bg_index


def parse_classes_text(text: str) -> list[list[str]]:
    """One class per line, synonyms separated by commas; blank lines and lines starting with '#' are skipped."""
    classes = [[n.strip() for n in line.split(",")] for line in text.splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    normalize_classes(classes)  # validate early, with line-independent messages
    return classes


def parse_classes_file(path: str | Path) -> list[list[str]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MaskCLIPError(f"cannot read classes file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise MaskCLIPError(f"classes file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    classes = parse_classes_text(text)
    if not classes:
        raise MaskCLIPError(f"classes file {path} lists no classes (one class per line expected)")
    return classes
