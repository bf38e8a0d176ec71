"""Segmentation options and the per-dense-mode defaults (no torch here: the CLIs parse them first).

Every option of `MaskCLIP.segment` besides the image, the classes and the background prompts lives in one
frozen `SegmentOptions`. Fields left at None take the defaults of the dense mode in use (`MODE_DEFAULTS`,
the settings each method's paper evaluates with), so switching the mode switches its protocol too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from .dense_modes import DENSE_MODE_NAMES, DENSE_MODES, ModeDefaults  # noqa: F401 (re-exported)
from .errors import MaskCLIPError

KS_VARIANTS = ("cosine", "official")
SYNONYM_MERGES = ("average", "max")
SCALE_FUSIONS = ("mean", "softmax1")

# Derived from the dense-mode registry (maskclip.dense_modes), kept under their former names.
MODE_DEFAULTS: dict[str, ModeDefaults] = {name: spec.defaults for name, spec in DENSE_MODES.items()}
PAPER_RESULTS: dict[str, dict[str, float]] = {name: dict(spec.paper_results) for name, spec in DENSE_MODES.items()}
PAPERS: dict[str, str] = {name: spec.paper for name, spec in DENSE_MODES.items()}


@dataclass(frozen=True)
class SegmentOptions:
    """How class scores become probabilities and labels. None = the dense mode's default."""

    key_smoothing: bool | None = None
    prompt_denoising: bool | None = None
    pd_threshold: float = 0.5
    temperature: float | None = None
    # key smoothing: "cosine" (the paper: keys normalised over channels, every patch smoothed) or "official"
    # (MaskCLIP's code: keys normalised over tokens; only patches whose best probability is below
    # ks_threshold are smoothed), to reproduce the paper's +KS numbers
    ks_variant: str = "cosine"
    ks_threshold: float = 1.0
    # a pixel whose best class probability is below this becomes background (None: off)
    bg_threshold: float | None = None
    # synonyms: "average" their embeddings (MaskCLIP) or take the "max" of their probabilities (successors)
    synonyms: str = "average"
    # PAMR (Araslanov & Roth, CVPR 2020) refinement of the class maps by the image's local affinities
    pamr: bool = False
    pamr_steps: int = 10
    pamr_dilations: tuple[int, ...] = (8, 16)
    # several scales: "mean" of the probabilities, or "softmax1": mean of softmax at temperature 1 of each
    # scale's output (cosine scores, or KS probabilities), as the official mmseg aug_test fuses them
    scale_fusion: str = "mean"
    window: int | None = None
    stride: int | None = None
    window_norm: bool | None = None

    @classmethod
    def from_mapping(cls, values: Mapping) -> "SegmentOptions":
        """Options from a settings dict or keyword arguments; unknown names are errors."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise MaskCLIPError(f"unknown segmentation option(s) {', '.join(unknown)} "
                                f"(known: {', '.join(sorted(names))})")
        values = dict(values)
        if values.get("pamr_dilations") is not None:
            values["pamr_dilations"] = tuple(int(d) for d in values["pamr_dilations"])
        return cls(**values)

    def updated(self, **changes) -> "SegmentOptions":
        return SegmentOptions.from_mapping({**dataclasses.asdict(self), **changes})

    def resolved(self, mode: str) -> "SegmentOptions":
        """These options with every None replaced by `mode`'s default, validated."""
        if mode not in MODE_DEFAULTS:
            raise MaskCLIPError(f"unknown dense mode '{mode}' (known: {', '.join(DENSE_MODE_NAMES)})")
        defaults = dataclasses.asdict(MODE_DEFAULTS[mode])
        filled = {k: defaults[k] if v is None and k in defaults else v for k, v in dataclasses.asdict(self).items()}
        filled["pamr_dilations"] = tuple(filled["pamr_dilations"])
        options = SegmentOptions(**filled)
        options.validate()
        return options

    def validate(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise MaskCLIPError(message)

        check(0.0 <= self.pd_threshold <= 1.0,
              f"the prompt denoising threshold must lie in [0, 1], got {self.pd_threshold}")
        check(self.temperature is None or self.temperature > 0,
              f"the temperature must be positive, got {self.temperature}")
        check(self.ks_variant in KS_VARIANTS, f"ks_variant must be one of {KS_VARIANTS}, got {self.ks_variant!r}")
        check(self.bg_threshold is None or 0.0 <= self.bg_threshold <= 1.0,
              f"the background threshold must lie in [0, 1], got {self.bg_threshold}")
        check(self.synonyms in SYNONYM_MERGES, f"synonyms must be one of {SYNONYM_MERGES}, got {self.synonyms!r}")
        check(self.pamr_steps >= 0 and all(d >= 1 for d in self.pamr_dilations) and bool(self.pamr_dilations),
              f"PAMR needs steps >= 0 and dilations >= 1, got {self.pamr_steps} and {self.pamr_dilations}")
        check(self.scale_fusion in SCALE_FUSIONS,
              f"scale_fusion must be one of {SCALE_FUSIONS}, got {self.scale_fusion!r}")
        check(self.window is None or self.window >= 1, f"the window must be positive, got {self.window}")
        check(self.stride is None or self.stride >= 1, f"the stride must be positive, got {self.stride}")

    def settings(self) -> dict:
        """The options as stored in a project's settings ("method"): explicit values only."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
                if v is not None}


def option_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(SegmentOptions))
