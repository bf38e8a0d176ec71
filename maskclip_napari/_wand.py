"""The feature wand (no Qt): from one clicked pixel, the connected region whose dense CLIP features are like
the clicked patch's (cosine similarity at least a threshold). It needs no model run: the features are those
the session already holds in memory for the image shown (the ones its segmentation used).

The similarity is computed once per click on the patch grid; the region is the 8-connected set of patches
above the threshold that holds the clicked patch and the patches around it, cut at full resolution where the
bilinearly upsampled similarity (as torch's resize places it) falls below the threshold, so its border
follows the image, not the grid. numpy and scipy only. Changing the threshold recomputes only the region (the preview follows a slider).
"""
from __future__ import annotations

import numpy as np

WAND_SIMILARITY = 0.8  # default cosine threshold


def held_features(session, image: np.ndarray, method):
    """The image's first-scale dense features [D, h, w] if the session holds them in memory, else None
    (computing them here would hold the GUI thread for seconds: segment the image first)."""
    if session is None or image is None:
        return None
    other = dict(method.other_options)
    kwargs = {"scales": method.scales, "dense_mode": method.dense_mode,
              **{k: other[k] for k in ("window", "stride", "window_norm") if other.get(k) is not None}}
    if not session.model.has_features(image, **kwargs):
        return None
    return session.model.image_features(image, **kwargs)[0]["features"]


def _bilinear_axis(n_out: int, n_in: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For output pixels start..stop-1 of n_out: the two input cells and the weight of the second, as torch's
    bilinear resize with align_corners=False places them (pixel centres)."""
    src = np.maximum((np.arange(start, stop) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    low = np.minimum(src.astype(np.int64), n_in - 1)
    return low, np.minimum(low + 1, n_in - 1), (src - low).astype(np.float32)


class FeatureWand:
    """One click's similarity map; `region(threshold)` the pixels it selects (bool HxW) and `box` the rows
    and columns (y0, y1, x0, x1) they lie in."""

    def __init__(self, features, point: tuple[float, float], shape: tuple[int, int]):
        height, width = shape
        grid_h, grid_w = features.shape[1:]
        row = min(max(int(point[0]), 0), height - 1)
        col = min(max(int(point[1]), 0), width - 1)
        self.point, self.shape = (row, col), (height, width)
        self.seed = (min(row * grid_h // height, grid_h - 1), min(col * grid_w // width, grid_w - 1))
        flat = np.asarray(features.float().flatten(1) if hasattr(features, "float") else features, np.float32)
        flat = flat.reshape(flat.shape[0], -1)
        unit = flat / np.maximum(np.linalg.norm(flat, axis=0, keepdims=True), 1e-12)
        self.similarity = (unit[:, self.seed[0] * grid_w + self.seed[1]] @ unit).reshape(grid_h, grid_w)
        # the patch each pixel lies in (monotonic: a range of patches is a range of pixels)
        self._rows = np.minimum(np.arange(height) * grid_h // height, grid_h - 1)
        self._cols = np.minimum(np.arange(width) * grid_w // width, grid_w - 1)

    def region(self, threshold: float) -> np.ndarray:
        """Only the box around the region's patches is computed at full resolution: a click costs what its
        region covers, not the image's size."""
        from scipy import ndimage

        above = self.similarity >= threshold
        above[self.seed] = True
        labelled, _ = ndimage.label(above, structure=np.ones((3, 3), bool))
        patches = labelled == labelled[self.seed]
        near = ndimage.binary_dilation(patches, structure=np.ones((3, 3), bool))  # its border patches too
        (r0, r1), (c0, c1) = ((int(i.min()), int(i.max()) + 1) for i in np.nonzero(near))
        y0, y1 = np.searchsorted(self._rows, [r0, r1])
        x0, x1 = np.searchsorted(self._cols, [c0, c1])
        height, width = self.shape
        grid_h, grid_w = self.similarity.shape
        top, bottom, wy = _bilinear_axis(height, grid_h, y0, y1)
        left, right, wx = _bilinear_axis(width, grid_w, x0, x1)
        rows = self.similarity[top] * (1 - wy)[:, None] + self.similarity[bottom] * wy[:, None]
        sim = rows[:, left] * (1 - wx) + rows[:, right] * wx  # the similarity, upsampled over the box
        mask = np.zeros(self.shape, bool)
        # the border follows the similarity pixel by pixel
        mask[y0:y1, x0:x1] = near[np.ix_(self._rows[y0:y1], self._cols[x0:x1])] & (sim >= threshold)
        mask[self.point] = True
        self.box = (int(y0), int(y1), int(x0), int(x1))  # every selected pixel lies in it
        return mask
