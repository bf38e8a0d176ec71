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
# each name is encoded in 85 templates: 20 000 synonyms or 5 000 background prompts would run for minutes
MAX_SYNONYMS = 64  # names per class (its name and synonyms)
MAX_BACKGROUND_PROMPTS = 256


def check_prompt_counts(n_names: int, n_background: int, where: str = "") -> None:
    """Refuse more than MAX_SYNONYMS names for one class or MAX_BACKGROUND_PROMPTS background prompts."""
    if n_names > MAX_SYNONYMS:
        raise MaskCLIPError(f"{where}{n_names} names (name and synonyms) for one class; at most {MAX_SYNONYMS} are "
                            "allowed (each is encoded in 85 prompt templates)")
    if n_background > MAX_BACKGROUND_PROMPTS:
        raise MaskCLIPError(f"{where}{n_background} background prompts; at most {MAX_BACKGROUND_PROMPTS} are "
                            "allowed (each is encoded in 85 prompt templates)")


def normalize_classes(classes: Iterable[ClassSpec], what: str = "class") -> list[tuple[str, ...]]:
    """Validated classes as tuples of stripped names; blank or duplicate names are errors, not surprises."""
    if isinstance(classes, str):
        raise MaskCLIPError(f"{what} list must be a list of names, not the single string {classes!r}")
    result: list[tuple[str, ...]] = []
    seen: dict[str, int] = {}
    for index, spec in enumerate(classes):
        names = (spec,) if isinstance(spec, str) else tuple(spec)
        names = tuple(str(n).strip() for n in names)
        check_prompt_counts(len(names), 0, f"{what} {index + 1}: ")
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
    background = list(background)
    check_prompt_counts(0, len(background))
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


def check_name_characters(classes, where: str) -> None:
    """Refuse control characters (newlines, tabs, NUL ...) in class names: they break labels.txt and CLIs."""
    for index, spec in enumerate(classes):
        spec = spec["name"] if isinstance(spec, dict) else spec
        for name in (spec,) if isinstance(spec, str) else spec:
            if isinstance(name, str) and any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
                raise MaskCLIPError(f"{where}: class {index + 1} ({name!r}) contains a control character "
                                    "(newline, tab, ...); class names must be plain text")


def read_classes_file(path: str | Path) -> list:
    """Classes from a file, for `segment` and `project init`: a text file (one class per line, synonyms
    comma-separated), a JSON list of names or of lists of synonyms, or a classes.json object
    ({"classes": [...], "colors": [...]}, whose classes come back as {"name", "colour"} dicts)."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        classes = parse_classes_file(path)
    else:
        import json

        from .labels_io import read_classes_json

        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, ValueError):
            data = None  # read_classes_json says what is wrong
        if isinstance(data, list):
            if not data or not all(isinstance(c, str) or (isinstance(c, list) and c and all(isinstance(n, str)
                                                                                           for n in c)) for c in data):
                raise MaskCLIPError(f"classes file {path}: a JSON list must hold class names or lists of synonyms "
                                    '(e.g. ["road", ["car", "automobile"]])')
            classes = data
            normalize_classes(classes)
        else:
            data = read_classes_json(path)
            classes = [{"name": n, "colour": c} for n, c in zip(data["classes"], data["colors"])]
    check_name_characters(classes, f"classes file {path}")
    return classes


def parse_classes_file(path: str | Path) -> list[list[str]]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # -sig: a UTF-8 BOM is not part of the first name
    except OSError as exc:
        raise MaskCLIPError(f"cannot read classes file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise MaskCLIPError(f"classes file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    classes = parse_classes_text(text)
    if not classes:
        raise MaskCLIPError(f"classes file {path} lists no classes (one class per line expected)")
    return classes
