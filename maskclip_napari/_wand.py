"""The feature wand (no Qt): from one clicked pixel, the connected region whose dense CLIP features are like
the clicked patch's (cosine similarity at least a threshold). It needs no model run: the features are those
the session already holds in memory for the image shown (the ones its segmentation used).

The similarity is computed once per click on the patch grid; the region is the 8-connected set of patches
above the threshold that holds the clicked patch and the patches around it, cut at full resolution where the
bilinearly upsampled similarity falls below the threshold (so its border follows the image, not the grid). Changing the threshold recomputes only the region (the preview follows a slider).
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


class FeatureWand:
    """One click's similarity map; `region(threshold)` the pixels it selects (bool HxW)."""

    def __init__(self, features, point: tuple[float, float], shape: tuple[int, int]):
        import torch
        import torch.nn.functional as F

        height, width = shape
        grid_h, grid_w = features.shape[1:]
        row = min(max(int(point[0]), 0), height - 1)
        col = min(max(int(point[1]), 0), width - 1)
        self.point, self.shape = (row, col), (height, width)
        self.seed = (min(row * grid_h // height, grid_h - 1), min(col * grid_w // width, grid_w - 1))
        unit = F.normalize(features.flatten(1).float(), dim=0)
        seed = unit[:, self.seed[0] * grid_w + self.seed[1]]
        similarity = (seed @ unit).view(1, 1, grid_h, grid_w)
        self.similarity = similarity[0, 0].numpy()
        with torch.inference_mode():
            self.full = F.interpolate(similarity, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()
        # the patch each pixel lies in (the patch-grid region, upsampled by indexing)
        self._rows = np.minimum(np.arange(height) * grid_h // height, grid_h - 1)
        self._cols = np.minimum(np.arange(width) * grid_w // width, grid_w - 1)

    def region(self, threshold: float) -> np.ndarray:
        from scipy import ndimage

        above = self.similarity >= threshold
        above[self.seed] = True
        labelled, _ = ndimage.label(above, structure=np.ones((3, 3), bool))
        patches = labelled == labelled[self.seed]
        near = ndimage.binary_dilation(patches, structure=np.ones((3, 3), bool))  # its border patches too
        mask = near[np.ix_(self._rows, self._cols)]
        mask &= self.full >= threshold  # the border follows the similarity pixel by pixel
        mask[self.point] = True
        return mask
