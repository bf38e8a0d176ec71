"""The napari layers the annotator manages (names are stable; the user may hide or restyle them):

- "image": the current image;
- "confidence: <class>": one colour-mapped map per class, hidden until the user shows it;
- "labels": the editable labels (class i shown as value i + 1, 0 = unlabelled), a `_stroke_layer.StrokeLabels`;
- "low confidence": where the model is unsure (`_unsure`), above the labels, shown by the user's toggle;
- "wand preview": the feature wand's region before it is applied (`_wand`).

How classes look as layers (colormaps, features) is `_layers`; this module makes, updates and finds the
layers. It holds no edits: the widget's `EditState` does.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ._layers import UNSURE_COLOUR, confidence_colormap, labels_colormap, labels_features, mask_colormap

IMAGE_LAYER = "image"
LABELS_LAYER = "labels"
CONFIDENCE_PREFIX = "confidence: "
UNSURE_LAYER = "low confidence"
WAND_LAYER = "wand preview"


class LayerManager:
    """The viewer's image, labels and confidence layers.

    current: () -> (segmentation or None, image or None) shown now (a confidence layer the user shows is
    filled from it); on_labels_layer(layer): called once for each labels layer made (events, key bindings).
    """

    def __init__(self, viewer, current: Callable, on_labels_layer: Callable):
        self.viewer = viewer
        self._current = current
        self._on_labels_layer = on_labels_layer
        self._conf_visible: dict[str, bool] = {}  # a removed confidence layer's visibility, for its return
        self.hidden_classes: set[str] = set()  # class names the legend hides on the labels layer
        viewer.layers.events.inserted.connect(self._keep_image_at_bottom)

    # --- finding ------------------------------------------------------------------------------------
    def layer(self, name: str):
        return self.viewer.layers[name] if name in self.viewer.layers else None

    @property
    def image_layer(self):
        return self.layer(IMAGE_LAYER)

    @property
    def labels_layer(self):
        return self.layer(LABELS_LAYER)

    @property
    def confidence_layers(self) -> dict:
        return {layer.name[len(CONFIDENCE_PREFIX):]: layer for layer in self.viewer.layers
                if layer.name.startswith(CONFIDENCE_PREFIX)}

    def _keep_image_at_bottom(self, event) -> None:
        """An "image" layer added from outside (the sample data hands it back) goes under the labels."""
        layer = event.value
        if layer.name == IMAGE_LAYER and self.viewer.layers.index(layer) != 0:
            self.viewer.layers.move(self.viewer.layers.index(layer), 0)
            from qtpy.QtCore import QTimer

            # napari makes the added layer active and keeps the view of the old image: once it is done,
            # the labels are active again (number keys, Ctrl+Z) and the view fits the image
            QTimer.singleShot(0, self._after_outside_image)

    def _after_outside_image(self) -> None:
        if self.labels_layer is not None:
            self.viewer.layers.selection.active = self.labels_layer
        self.viewer.reset_view()

    # --- image and labels ---------------------------------------------------------------------------
    def set_image(self, image: np.ndarray) -> None:
        rgb = image.ndim == 3 and image.shape[2] in (3, 4)
        layer = self.image_layer
        if layer is not None and layer.rgb == rgb:
            layer.data = image
            if not rgb or image.dtype != np.uint8:
                layer.reset_contrast_limits()
            if layer.metadata.pop("maskclip_placeholder", False):
                layer.visible = True
            return
        if layer is not None:
            self.viewer.layers.remove(layer)
        layer = self.viewer.add_image(image, name=IMAGE_LAYER, rgb=rgb)
        self.viewer.layers.move(self.viewer.layers.index(layer), 0)

    def set_labels(self, values: np.ndarray, names, colours, editable: bool = True):
        """Put values in the labels layer (made on first use) and make it the active layer."""
        table = (tuple(names), tuple(colours))
        layer = self.labels_layer
        if layer is None:
            layer = self.add_labels_layer(values, names, colours)
        else:
            if layer.metadata.pop("maskclip_placeholder", False):
                layer.visible = True
            mode = layer.mode
            layer.editable = False  # drops napari's own undo history: it belongs to the previous labels
            layer.data = values
            if layer.metadata.get("maskclip_classes") != table:
                layer.colormap = self._colormap(names, colours)
                layer.features = labels_features(names)
            layer.editable = editable
            if editable:
                layer.mode = mode
        layer.metadata["maskclip_classes"] = table
        layer.editable = editable  # a stale image's labels are not applied, so they cannot be edited
        self.viewer.layers.selection.active = layer
        return layer

    def set_label_classes(self, names, colours) -> None:
        """New class names or colours for the labels layer."""
        layer = self.labels_layer
        if layer is not None:
            layer.colormap = self._colormap(names, colours)
            layer.features = labels_features(names)
            layer.metadata["maskclip_classes"] = (tuple(names), tuple(colours))

    def set_hidden_classes(self, hidden) -> None:
        """Hide these classes (names) on the labels layer (transparent; their pixels stay as they are)."""
        self.hidden_classes = set(hidden)
        layer = self.labels_layer
        if layer is not None and "maskclip_classes" in layer.metadata:
            layer.colormap = self._colormap(*layer.metadata["maskclip_classes"])

    def _colormap(self, names, colours):
        return labels_colormap(colours, [i for i, name in enumerate(names) if name in self.hidden_classes])

    def add_labels_layer(self, values: np.ndarray, names, colours):
        from ._stroke_layer import StrokeLabels  # napari.layers: imported once the layer warm-up has (_layers)

        layer = self.viewer.add_layer(StrokeLabels(values, name=LABELS_LAYER, opacity=0.55,
                                                   colormap=self._colormap(names, colours),
                                                   features=labels_features(names)))
        self._on_labels_layer(layer)
        return layer

    def add_placeholder(self) -> bool:
        """Make the next missing layer (image, then labels), hidden and empty; True when one was made and
        another may follow (one layer per call: napari takes about 0.1 s of GUI time per new layer)."""
        if self.image_layer is None:
            layer = self.viewer.add_image(np.zeros((1, 1, 3), np.uint8), name=IMAGE_LAYER, rgb=True, visible=False)
            layer.metadata["maskclip_placeholder"] = True
            return True
        if self.labels_layer is None:
            layer = self.add_labels_layer(np.zeros((1, 1), np.uint8), [], [])
            layer.editable = False
            layer.visible = False
            layer.metadata["maskclip_placeholder"] = True
        return False

    # --- confidence ---------------------------------------------------------------------------------
    def remove_confidence_layers(self) -> None:
        for name, layer in self.confidence_layers.items():
            self._conf_visible[name] = layer.visible
            self.viewer.layers.remove(layer)

    def update_confidence_layers(self, names, colours_list) -> None:
        """One colour-mapped image layer per project class, showing the current segmentation.

        Only visible layers receive new data right away; hidden ones are filled when the user shows them,
        so a redraw costs one layer update per visible map, not one per class. The layers are made with the
        first segmentation (before it they would only show zeros, and each napari layer takes a GUI-thread
        turn to make); hidden ones left from a differently sized image get that image's size at once, so
        the view fits the image shown.
        """
        segmentation, image = self._current()
        if image is None:
            self.remove_confidence_layers()
            return
        shape = image.shape[:2]
        colours = dict(zip(names, colours_list))
        for name, layer in self.confidence_layers.items():
            if name not in colours:
                self._conf_visible[name] = layer.visible
                self.viewer.layers.remove(layer)
        existing = self.confidence_layers
        for name in names:
            layer = existing.get(name)
            if layer is None and segmentation is None:
                continue
            if layer is None:
                layer = self.viewer.add_image(np.zeros(shape, np.float32), name=CONFIDENCE_PREFIX + name,
                                              colormap=confidence_colormap(name, colours[name]),
                                              contrast_limits=(0, 1), blending="translucent", opacity=0.8,
                                              visible=self._conf_visible.get(name, False))
                layer.metadata["maskclip_colour"] = colours[name]
                layer.events.visible.connect(self._on_confidence_visible)
                if self.labels_layer is not None:  # keep the labels on top
                    layers = self.viewer.layers
                    layers.move(layers.index(layer), layers.index(self.labels_layer))
            elif layer.metadata.get("maskclip_colour") != colours[name]:
                layer.colormap = confidence_colormap(name, colours[name])
                layer.metadata["maskclip_colour"] = colours[name]
            layer.metadata["maskclip_stale"] = True
            if layer.visible:
                self._fill_confidence(layer)
            elif layer.data.shape != shape:
                layer.data = np.zeros(shape, np.float32)
        if self.labels_layer is not None:
            self.viewer.layers.selection.active = self.labels_layer

    def _fill_confidence(self, layer) -> None:
        """Give a confidence layer the current segmentation's map of its class (zeros when there is none)."""
        name = layer.name[len(CONFIDENCE_PREFIX):]
        seg, image = self._current()
        shape = image.shape[:2]
        if seg is not None and name in seg.class_names and seg.probs.shape[1:] == shape:
            layer.data = seg.probs[seg.class_names.index(name)]
        elif layer.data.shape != shape or layer.data.any():
            layer.data = np.zeros(shape, np.float32)
        layer.metadata["maskclip_stale"] = False

    def _on_confidence_visible(self, event) -> None:
        layer = event.source
        if layer.visible and layer.metadata.get("maskclip_stale") and self._current()[1] is not None:
            self._fill_confidence(layer)

    # --- masks over the labels: low confidence, the wand's preview --------------------------------
    @property
    def unsure_layer(self):
        return self.layer(UNSURE_LAYER)

    def show_unsure(self, mask: np.ndarray | None) -> None:
        """Show `mask` (uint8 HxW, 1 = unsure) above the labels; None hides the layer."""
        self.show_mask(UNSURE_LAYER, mask, UNSURE_COLOUR, 0.6)

    def show_mask(self, name: str, mask: np.ndarray | None, rgb, opacity: float, offset=(0, 0)) -> None:
        """Show `mask` (1 = shaded) in colour `rgb` (0..1) as layer `name` above the labels, its first pixel at
        image pixel `offset` (a part of the image costs napari only its own size); None hides it. The labels
        stay the active layer (number keys, Ctrl+Z)."""
        layer = self.layer(name)
        if mask is None:
            if layer is not None:
                layer.visible = False
            return
        mask = mask.view(np.uint8) if mask.dtype == bool else mask
        if layer is None:
            layer = self.viewer.add_image(mask, name=name, colormap=mask_colormap(name, rgb), contrast_limits=(0, 1),
                                          blending="translucent", opacity=opacity, interpolation2d="nearest",
                                          translate=offset)
        else:
            if layer.metadata.get("maskclip_colour") != tuple(rgb):
                layer.colormap = mask_colormap(name, rgb)
            if tuple(layer.translate[-2:]) != tuple(offset):
                layer.translate = offset
            layer.data = mask
            layer.visible = True
        layer.metadata["maskclip_colour"] = tuple(rgb)
        if self.labels_layer is not None:
            self.viewer.layers.selection.active = self.labels_layer

    def select_label(self, value: int) -> None:
        """Paint with labels-layer value `value` (switches a non-painting mode to paint)."""
        layer = self.labels_layer
        if layer is not None:
            layer.selected_label = value
            if layer.mode in ("pan_zoom", "transform", "picker") and layer.editable:
                layer.mode = "paint"

    def describe_cursor(self, position, image_id: str, class_names, segmentation, verified) -> str:
        """What is under the cursor: the class, its confidence and MaskCLIP's best class when they differ,
        and whether the pixel is verified (the image's name outside it)."""
        layer = self.labels_layer
        r, c = (int(round(v)) for v in layer.world_to_data(position)[-2:])
        h, w = layer.data.shape
        if not (0 <= r < h and 0 <= c < w):
            return image_id
        value = int(layer.data[r, c])
        name = class_names[value - 1] if 0 < value <= len(class_names) else "unlabelled"
        parts = [name]
        seg = segmentation
        if seg is not None and seg.probs.shape[1:] == (h, w):
            if name in seg.class_names:
                parts.append(f"confidence {seg.probs[seg.class_names.index(name), r, c]:.2f}")
            best = int(seg.probs[:, r, c].argmax())
            if seg.class_names[best] != name:
                parts.append(f"MaskCLIP: {seg.class_names[best]} {seg.probs[best, r, c]:.2f}")
        if verified is not None and verified.shape == (h, w) and verified[r, c]:
            parts.append("verified")
        return " · ".join(parts)
