"""How project classes and labels look as napari layers.

Project labels hold class indices 0..K-1 and 255 for unlabelled; napari's Labels convention is 0 = no label.
The Labels layer therefore shows class i as value i + 1. Its `features` table names every value (napari
prints it in the status bar on hover) and a DirectLabelColormap gives each value its class colour, so the
layer, the class editor and the exports agree.
"""
from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
from napari.utils.colormaps import Colormap, DirectLabelColormap

UNLABELLED = "unlabelled"


def labels_features(names: Sequence[str]) -> dict:
    return {"index": np.arange(len(names) + 1), "class": [UNLABELLED, *names]}


def labels_colormap(colours: Sequence[Sequence[int]], hidden: Sequence[int] = ()) -> DirectLabelColormap:
    """Class i as value i + 1 in its colour; the classes whose indices are in `hidden` transparent."""
    color_dict = {None: np.zeros(4), 0: np.zeros(4)}
    for i, rgb in enumerate(colours):
        color_dict[i + 1] = np.array([*(c / 255 for c in rgb), 0.0 if i in hidden else 1.0])
    return DirectLabelColormap(color_dict=color_dict, background_value=0)


def confidence_colormap(name: str, rgb: Sequence[int]) -> Colormap:
    """Transparent at 0, the class colour at 1: stacked maps read like a soft version of the labels."""
    r, g, b = (c / 255 for c in rgb)
    return Colormap([[r, g, b, 0.0], [r, g, b, 1.0]], name=f"maskclip {name}")


UNSURE_COLOUR = (1.0, 0.0, 1.0)  # magenta: no class colour of the default palettes
WAND_COLOUR = (0.0, 1.0, 1.0)  # cyan: the wand's preview, whatever the brush's class


def mask_colormap(name: str, rgb: Sequence[float]) -> Colormap:
    """Transparent at 0, `rgb` (0..1) at 1: a mask shown over the labels (low confidence, the wand's preview)."""
    return Colormap([[*rgb, 0.0], [*rgb, 1.0]], name=f"maskclip {name}")


def class_table_from_layer(features, colormap) -> tuple[list[str], list[tuple[int, int, int]]] | None:
    """(names, colours) of a Labels layer made by the annotator, or None for any other labels layer."""
    if features is None or "class" not in features or "index" not in features:
        return None
    index = np.asarray(features["index"])
    names = list(features["class"])
    if len(index) < 2 or not np.array_equal(index, np.arange(len(index))) or names[0] != UNLABELLED:
        return None
    names = [str(n) for n in names[1:]]
    colours = []
    for value in range(1, len(names) + 1):
        rgba = colormap.map(value) if colormap is not None else None
        if rgba is None:
            return names, None
        colours.append(tuple(int(round(float(c) * 255)) for c in np.ravel(rgba)[:3]))
    return names, colours


_warm = threading.Event()  # set when the warm-up has finished (or failed: then the real layers raise)
_warm_started = threading.Lock()


def warm_up_layers() -> None:
    """Pay napari's one-time costs of the first image and labels layers (about half a second here: some
    500 lazily imported modules and pint's unit registry) by building throwaway layer models.

    The annotator runs this in a thread while napari starts, so the first project opened does not freeze
    the viewer for it; only adding the layers to the viewer is left to the GUI thread. Runs once per
    process; a second call returns at once.
    """
    if not _warm_started.acquire(blocking=False):
        return
    try:
        from napari.layers import Image, Labels

        Image(np.zeros((2, 2, 3), np.uint8), rgb=True)
        Image(np.zeros((2, 2), np.float32), colormap=confidence_colormap("warm-up", (0, 0, 0)),
              contrast_limits=(0, 1))
        Labels(np.zeros((2, 2), np.uint8), colormap=labels_colormap([(0, 0, 0)]),
               features=labels_features(["warm-up"]))
    finally:
        _warm.set()


def layers_ready(wait: bool) -> bool:
    """Whether layers can be made now. Layer making must not overlap the warm-up: pint's registry is not
    thread-safe while it initialises. Runs the warm-up here if no thread started it; while a thread runs
    it, waits for it (wait=True) or returns False (the caller tries again shortly)."""
    if not _warm.is_set():
        warm_up_layers()  # no-op while a thread runs it
    return _warm.wait() if wait else _warm.is_set()
