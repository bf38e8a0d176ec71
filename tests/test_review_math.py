"""The review tools' math (no Qt): unsure regions, largest first, and the feature wand's region."""
import numpy as np
import pytest

from maskclip_napari._unsure import regions, unsure_mask
from maskclip_napari._wand import FeatureWand


def test_unsure_pixels_leave_out_verified_ones():
    confidence = np.array([[0.2, 0.9], [0.4, 0.1]], np.float32)
    verified = np.array([[False, False], [True, False]])
    assert unsure_mask(confidence, verified, 0.5).tolist() == [[1, 0], [0, 1]]


@pytest.mark.parametrize("shape", [(300, 400), (1500, 2000)])  # the second is found on 2x2 blocks
def test_regions_come_largest_first_with_their_boxes(shape):
    mask = np.zeros(shape, bool)
    mask[10:30, 20:60] = True  # 800 px
    mask[200:260, 300:380] = True  # 4800 px
    mask[100, 100] = True  # noise: left out
    found = regions(mask)
    assert [r.pixels for r in found] == [4800, 800]
    big, small = found
    assert (big.r0, big.r1, big.c0, big.c1) == (200, 260, 300, 380)
    assert (small.r0, small.r1, small.c0, small.c1) == (10, 30, 20, 60)
    assert big.centre == (229.5, 339.5)


def two_part_features(grid=(6, 8), dim=16):
    """Features of one kind on the left half of the patch grid, another on the right."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(dim), rng.standard_normal(dim)
    features = np.empty((dim, *grid), np.float32)
    features[:, :, : grid[1] // 2] = a[:, None, None]
    features[:, :, grid[1] // 2:] = b[:, None, None]
    return features


def test_the_wand_takes_the_connected_similar_region():
    wand = FeatureWand(two_part_features(), (10, 5), (60, 80))
    mask = wand.region(0.9)
    assert mask[:, :35].all() and not mask[:, 45:].any()  # the left half, its border inside the middle patches
    y0, y1, x0, x1 = wand.box
    assert not mask[:y0].any() and not mask[y1:].any() and not mask[:, :x0].any() and not mask[:, x1:].any()
    assert wand.region(-1.0).all()  # everything is similar enough


def test_the_wand_upsamples_like_torch():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    rng = np.random.default_rng(1)
    wand = FeatureWand(torch.from_numpy(rng.standard_normal((8, 5, 7)).astype(np.float32)), (20, 30), (50, 70))
    full = F.interpolate(torch.from_numpy(wand.similarity)[None, None], size=(50, 70), mode="bilinear",
                         align_corners=False)[0, 0].numpy()
    threshold = float(np.median(full))
    inside = wand.region(threshold)
    inside[20, 30] = False  # the clicked pixel is always in
    assert inside.any() and not (inside & (full < threshold - 1e-6)).any()  # torch's similarity, pixel by pixel
