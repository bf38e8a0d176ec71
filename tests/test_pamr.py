"""PAMR on synthetic cases: the affinity formula by hand, and masks snapping to an image edge."""
import torch

from maskclip.pamr import pamr, pamr_affinity


def test_affinity_of_a_constant_image_is_uniform():
    weights = pamr_affinity(torch.ones(3, 9, 9), dilations=(1, 2))
    torch.testing.assert_close(weights, torch.full((16, 9, 9), 1 / 16))


def test_affinity_matches_the_formula_at_one_pixel():
    torch.manual_seed(0)
    image = torch.rand(2, 7, 7)
    weights = pamr_affinity(image, dilations=(1,))
    i, j = 3, 3
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    patch = image[:, i - 1:i + 2, j - 1:j + 2].reshape(2, 9)
    sigma = patch.std(dim=1)  # unbiased, over the 3x3 neighbourhood with its centre
    kappa = torch.stack([-(image[:, i, j] - image[:, i + dy, j + dx]).abs() / (1e-8 + 0.1 * sigma)
                         for dy, dx in offsets]).mean(dim=1)
    torch.testing.assert_close(weights[:, i, j], torch.softmax(kappa, dim=0))


def test_masks_snap_to_the_image_edge():
    image = torch.zeros(3, 32, 32)
    image[:, :, 16:] = 1.0
    image += 0.01 * torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0))
    ramp = torch.linspace(0, 1, 32).expand(32, 32)  # a blurry class boundary across the whole width
    maps = torch.stack([1 - ramp, ramp])
    refined = pamr(image, maps, steps=10, dilations=(1, 2))
    left, right = refined[1][:, :16], refined[1][:, 16:]
    assert left.mean() < ramp[:, :16].mean() and right.mean() > ramp[:, 16:].mean()  # pulled apart at the edge
    torch.testing.assert_close(refined.sum(0), torch.ones(32, 32))
