"""Scores to probabilities, prompt denoising (PD) and key smoothing (KS) of patch-level class scores.

Both work on flattened patch grids: scores/probabilities are [K, N] (classes x patches), keys [C, N].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

TEMPERATURE = 100.0  # CLIP's logit scale: softmax(100 * cosine) wherever probabilities are needed
REMOVED_SCORE = -100.0  # cosine scores lie in [-1, 1]; after the temperature this is exp(-10 000) ~ 0


def probabilities(scores: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Class probabilities per patch from cosine scores [K, N]."""
    return torch.softmax(temperature * scores, dim=0)


def prompt_denoise(scores: torch.Tensor, threshold: float = 0.5,
                   temperature: float = TEMPERATURE) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove classes that are nowhere confident: their best patch probability is below `threshold`.

    Returns (scores with removed classes set to REMOVED_SCORE, boolean mask of kept classes). The class with
    the highest peak is always kept, so an image never ends up with no class at all (the official code would
    leave every class removed and the labels arbitrary).
    """
    peak = probabilities(scores, temperature).amax(dim=1)
    keep = peak >= threshold
    keep[peak.argmax()] = True
    return scores.masked_fill(~keep[:, None], REMOVED_SCORE), keep


def pipeline_probabilities(scores: torch.Tensor, keys: torch.Tensor | None, o) -> torch.Tensor:
    """Cosine scores [R, N] -> probabilities [R, N] as a dense mode turns them: prompt denoising, softmax at
    its temperature, key smoothing. o: resolved `SegmentOptions` (every field set); keys [C, N] are needed
    only when o.key_smoothing (shared by `MaskCLIP.segment` and the learner, which fits on what it outputs)."""
    if o.prompt_denoising:
        scores, _ = prompt_denoise(scores, o.pd_threshold, o.temperature)
    probs = probabilities(scores, o.temperature)
    if o.key_smoothing:
        probs = key_smooth(probs, keys) if o.ks_variant == "cosine" else \
            key_smooth_official(probs, keys, o.ks_threshold)
    return probs


def key_smooth(probs: torch.Tensor, keys: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """One pass of key smoothing: each patch's probabilities become sum_j cos(k_i, k_j) * p_j.

    Uses the paper's cosine over channels (the official code normalises keys over tokens instead). The N x N
    similarity matrix is built `chunk` rows at a time so big grids stay within memory. The smoothed scores
    are clamped at 0 and renormalised to sum to 1 per patch, which keeps the paper's arg-max wherever its
    best score is positive and gives displayable confidences; a patch whose scores are all <= 0 keeps its
    unsmoothed probabilities.
    """
    k = F.normalize(keys, dim=0)
    out = torch.empty_like(probs)
    for start in range(0, k.shape[1], chunk):
        weights = k[:, start:start + chunk].T @ k  # [n, N] cosine similarities
        out[:, start:start + chunk] = (weights @ probs.T).T
    return _renormalised(out, probs)


def key_smooth_official(probs: torch.Tensor, keys: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """Key smoothing as MaskCLIP's official code does it (to reproduce the paper's +KS numbers).

    Keys are L2-normalised over the token axis (F.normalize's default dim on [tokens, channels]), not
    over channels, and only patches whose best probability is below `threshold` take W @ probabilities;
    the others keep theirs. The same clamp-and-renormalise as `key_smooth` follows.
    """
    k = F.normalize(keys, dim=1)  # [C, N]: each channel normalised over the N tokens
    smoothed = ((k.T @ k) @ probs.T).T
    unsure = probs.amax(dim=0, keepdim=True) < threshold
    return _renormalised(torch.where(unsure, smoothed, probs), probs)


def _renormalised(out: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    out = out.clamp_min(0)
    total = out.sum(dim=0, keepdim=True)
    return torch.where(total > 0, out / total.clamp_min(1e-12), fallback)
