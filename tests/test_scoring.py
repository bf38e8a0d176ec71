"""Prompt denoising and key smoothing against small hand-computed cases."""
import math

import torch

from maskclip.scoring import REMOVED_SCORE, key_smooth, probabilities, prompt_denoise


def test_probabilities_use_temperature_100():
    p = probabilities(torch.tensor([[0.30], [0.29]]))
    # softmax(100 * [0.30, 0.29]) = [1, e^-1] / (1 + e^-1)
    assert math.isclose(p[0, 0].item(), 1 / (1 + math.exp(-1)), rel_tol=1e-5)


def test_prompt_denoising_removes_classes_never_confident():
    # patch 0: e^30, e^0, e^29.5 -> class 2 peaks at e^-0.5 / (1 + e^-0.5) = 0.378 < 0.5 -> removed.
    # class 0 peaks at 1 / (1 + e^-0.5) = 0.622 (patch 0), class 1 at ~1 (patch 1): kept.
    scores = torch.tensor([[0.30, 0.0], [0.0, 0.30], [0.295, 0.295]])
    denoised, keep = prompt_denoise(scores, threshold=0.5)
    assert keep.tolist() == [True, True, False]
    assert torch.all(denoised[2] == REMOVED_SCORE)
    assert torch.equal(denoised[:2], scores[:2])
    p = probabilities(denoised)
    assert p[2].max() < 1e-6 and math.isclose(p[0, 0].item(), 1 / (1 + math.exp(-30)), rel_tol=1e-6)
    # a threshold of 0.3 keeps all three
    assert prompt_denoise(scores, threshold=0.3)[1].all()


def test_prompt_denoising_keeps_the_most_confident_class_when_all_fall_below():
    scores = torch.tensor([[0.100, 0.100], [0.101, 0.100], [0.100, 0.101]])  # everything is ~1/3
    _, keep = prompt_denoise(scores, threshold=0.9)
    assert keep.sum() == 1


def test_key_smoothing_hand_computed():
    # keys: patches 0 and 1 point the same way (patch 1 three times longer), patch 2 is orthogonal.
    keys = torch.tensor([[1.0, 3.0, 0.0], [0.0, 0.0, 2.0]])  # [C=2, N=3]
    probs = torch.tensor([[1.0, 0.0, 0.3], [0.0, 1.0, 0.7]])  # [K=2, N=3]
    # W = [[1,1,0],[1,1,0],[0,0,1]]: patches 0,1 -> (1,1)/2, patch 2 unchanged
    expected = torch.tensor([[0.5, 0.5, 0.3], [0.5, 0.5, 0.7]])
    torch.testing.assert_close(key_smooth(probs, keys), expected)


def test_key_smoothing_weights_by_cosine_and_falls_back_when_nothing_positive():
    keys = torch.tensor([[1.0, 1.0, -1.0], [0.0, 1.0, 0.0]])
    probs = torch.tensor([[1.0, 0.0, 0.2], [0.0, 1.0, 0.8]])
    c = 1 / math.sqrt(2)
    # patch 0: 1*p0 + c*p1 - 1*p2 = (1 - 0.2, c - 0.8) = (0.8, -0.093) -> clamped (0.8, 0) -> (1, 0)
    # patch 2: -p0 - c*p1 + p2 = (-0.8, 0.8 - c) -> (0, 1)
    out = key_smooth(probs, keys)
    torch.testing.assert_close(out[:, 0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(out[:, 2], torch.tensor([0.0, 1.0]))
    # patch 1: c*p0 + p1 - c*p2 = (c - 0.2c, 1 - 0.8c) normalised
    a, b = c * 0.8, 1 - 0.8 * c
    torch.testing.assert_close(out[:, 1], torch.tensor([a, b]) / (a + b))
    # all-negative case: a patch whose only neighbours are opposite keeps its own probabilities
    keys2 = torch.tensor([[1.0, -1.0, -1.0]])
    probs2 = torch.tensor([[0.6, 0.5, 0.5], [0.4, 0.5, 0.5]])  # patch 0: (0.6-1, 0.4-1) <= 0
    torch.testing.assert_close(key_smooth(probs2, keys2)[:, 0], probs2[:, 0])


def test_key_smoothing_chunking_does_not_change_the_result():
    torch.manual_seed(0)
    keys, probs = torch.randn(16, 300), torch.softmax(torch.randn(5, 300), dim=0)
    torch.testing.assert_close(key_smooth(probs, keys, chunk=7), key_smooth(probs, keys, chunk=4096))
