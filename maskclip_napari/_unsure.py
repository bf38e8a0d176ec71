"""Where the model is unsure on the current image: the low-confidence overlay and its regions (no Qt).

Confidence is the best class's probability per pixel: the current segmentation's when one is on screen (it
follows the settings), else the one stored with the image's last segmentation (`Project.confidence_map`).
A pixel is unsure when its confidence is below the threshold and no person verified it. Its connected
regions, largest first, are where *Next unsure region* takes the view.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNSURE_BELOW = 0.5  # default threshold: the best class has less than half the probability
MIN_REGION_SHARE = 1e-4  # regions smaller than this share of the image (or MIN_REGION_PIXELS) are noise
MIN_REGION_PIXELS = 16


@dataclass(frozen=True)
class Region:
    """One connected unsure region: its pixel count and bounding box (rows r0:r1, columns c0:c1)."""

    pixels: int
    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def centre(self) -> tuple[float, float]:
        return (self.r0 + self.r1 - 1) / 2, (self.c0 + self.c1 - 1) / 2


def unsure_mask(confidence: np.ndarray, verified: np.ndarray | None, below: float) -> np.ndarray:
    """Pixels below `below` that no person verified (uint8 0/1, as the overlay layer shows it)."""
    mask = np.asarray(confidence) < below
    if verified is not None and verified.shape == mask.shape:
        mask &= ~verified
    return mask.view(np.uint8)


REGION_GRID_PIXELS = 1 << 20  # regions are found on a grid of at most this many cells (12 Mpx: 4x4 blocks)


def regions(mask: np.ndarray) -> list[Region]:
    """The mask's 8-connected regions, largest first (tiny ones left out). A large image's mask is first
    reduced to blocks (a block is unsure when any of its pixels is), so the pass stays cheap; boxes and pixel
    counts are then in image pixels (counts of the blocks' unsure pixels)."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    height, width = mask.shape
    f = max(1, int(np.ceil(np.sqrt(mask.size / REGION_GRID_PIXELS))))
    padded = np.zeros((-(-height // f) * f, -(-width // f) * f), bool)
    padded[:height, :width] = mask
    counts = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f).sum(axis=(1, 3))
    labelled, count = ndimage.label(counts > 0, structure=np.ones((3, 3), bool))
    if not count:
        return []
    sizes = np.bincount(labelled.ravel(), weights=counts.ravel(), minlength=count + 1)
    smallest = max(MIN_REGION_PIXELS, int(MIN_REGION_SHARE * mask.size))
    found = []
    for index, box in enumerate(ndimage.find_objects(labelled), start=1):
        if box is not None and sizes[index] >= smallest:
            found.append(Region(int(sizes[index]), box[0].start * f, min(box[0].stop * f, height),
                                box[1].start * f, min(box[1].stop * f, width)))
    return sorted(found, key=lambda region: -region.pixels)


class UnsureRegions:
    """The current image's unsure mask and the region *Next unsure region* showed last (the cursor).

    `update(key, mask)` gives it a new mask (key: what it was made from); the regions are found on the first
    `next()` after a change, so toggling the overlay costs no connected-component pass."""

    def __init__(self):
        self.key = None
        self.mask: np.ndarray | None = None
        self._regions: list[Region] | None = None
        self._at = -1

    def update(self, key, mask: np.ndarray | None) -> None:
        if key != self.key or mask is None or self.mask is None or mask.shape != self.mask.shape \
                or not np.array_equal(mask, self.mask):
            self._regions, self._at = None, -1
        self.key, self.mask = key, mask

    def next(self) -> tuple[Region, int, int] | None:
        """(region, its 1-based rank, how many): the next region by size, wrapping; None when there is none."""
        if self.mask is None:
            return None
        if self._regions is None:
            self._regions = regions(self.mask)
        if not self._regions:
            return None
        self._at = (self._at + 1) % len(self._regions)
        return self._regions[self._at], self._at + 1, len(self._regions)
