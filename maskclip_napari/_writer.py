"""napari writer: a labels layer as a single-channel indexed PNG plus a class-name file.

napari's own labels writer only writes TIFF (uint32, no palette, no names). This one writes what the
project exports write: value = class index, 255 = unlabelled, the class colours as the palette, and
`<name>.classes.json` (maskclip.labels_io) next to the PNG.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from maskclip.defaults import UNLABELLED
from maskclip.errors import MaskCLIPError
from maskclip.labels_io import write_classes_json, write_index_png

from ._layers import class_table_from_layer


def classes_path_for(png: Path) -> Path:
    return png.with_name(png.name[: -len(png.suffix)] + ".classes.json")


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Write one labels layer; returns the paths written (the PNG, then the class file)."""
    png = Path(path)
    if png.suffix.lower() != ".png":
        png = png.with_name(png.name + ".png")
    labels = np.asarray(data)
    if labels.ndim != 2:
        raise MaskCLIPError(f"the indexed-PNG writer saves 2-D labels; this layer has shape {labels.shape}")
    table = class_table_from_layer(meta.get("features"), meta.get("colormap"))
    if table is not None:
        names, colors = table
        # annotator layers: 0 = unlabelled, value v = class v - 1
        bad = labels > len(names)
        index = np.where((labels == 0) | bad, UNLABELLED, labels.astype(np.int64) - 1)
    else:
        # any other labels layer: values are written as they are, named by their number
        if labels.size and (labels.min() < 0 or labels.max() >= UNLABELLED):
            raise MaskCLIPError(
                f"label values must lie in 0..254 for an indexed PNG (255 = unlabelled); this layer holds "
                f"{labels.min()}..{labels.max()}")
        top = int(labels.max()) if labels.size else 0
        names = [f"label {v}" for v in range(top + 1)]
        colors = None
        index = labels
    write_index_png(png, index.astype(np.uint8), palette=colors)
    classes = classes_path_for(png)
    write_classes_json(classes, names, colors=colors, ignore_index=UNLABELLED)
    return [str(png), str(classes)]
