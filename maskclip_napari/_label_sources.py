"""Where an image's labels came from, read from its revision history (`Project.history`). No Qt here.

Every revision names its source: a MaskCLIP prediction ("maskclip" from the annotator, "maskclip <model>"
from `maskclip project segment`), a MaskCLIP+ relabel ("maskclip+ refine (<run>)"), an import ("import"),
a restore ("restore r<N>"), or an editor's save ("annotator", "undone", "reviewed", ...). Editors' saves
change only pixels they verify (or un-verify), so the unverified pixels come from the latest revision that
is not an editor's: its source is the image's *label source*.

A MaskCLIP setting (K, PD, threshold, a class added) is applied in place only to labels whose source is
MaskCLIP itself; labels from a better or other source are previewed over, and replaced only by an explicit
Segment (which says what it replaces).
"""
from __future__ import annotations

# sources of editors' saves (the annotator's, and the core's defaults for set_labels / set_verified)
EDITOR_SOURCES = frozenset({"annotator", "undone", "redone", "reviewed", "verified class", "unverified",
                            "manual", "verify"})


def label_source(history: list[dict]) -> str | None:
    """The source of the unverified pixels: the latest revision's that is not an editor's save (None: the
    image was never segmented, or its history kept only editors' saves)."""
    for entry in reversed(history):
        source = str(entry.get("source", ""))
        if source not in EDITOR_SOURCES:
            return source
    return None


def is_maskclip(source: str | None) -> bool:
    """Whether labels of this source are MaskCLIP's own prediction (a new MaskCLIP setting may redo them)."""
    return source is not None and (source == "maskclip" or source.startswith("maskclip ")
                                   or source == "prediction")


def describe(source: str | None) -> str:
    """A source as the annotator names it."""
    if source is None:
        return "labels MaskCLIP did not make"
    if source.startswith("maskclip+ refine"):
        return "MaskCLIP+ refined labels" + source[len("maskclip+ refine"):]
    if source == "import":
        return "imported labels"
    if source.startswith("restore"):
        return f"restored labels ({source})"
    if is_maskclip(source):
        return "MaskCLIP's labels"
    return f"labels from '{source}'"
