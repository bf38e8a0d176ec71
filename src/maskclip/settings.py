"""The settings schema: how a project's settings dict maps to a CLIP choice and to `SegmentOptions`, for the
CLI, the trainer, the project store and the annotator alike (one mapping, here).

A project's settings (`Project.settings`)::

    {"model":  {"name": "ViT-B-16", "pretrained": "openai" | path | None, "dense_mode": "maskclip",
                "quick_gelu": None | bool},
     "method": {"scales": [336], <SegmentOptions fields explicitly set: key_smoothing, pd_threshold, ...>},
     "learn":  {"from_verified": False, "learner": "text-prior" | "prototypes", "weight": 0.5 (prototypes only)},
     "annotator": {...the annotator's own: device, last_image}}

The `method` fields that depend on the dense mode (`MODE_DEPENDENT`: KS, PD, temperature, windows) belong
to the stored mode: reading the settings for another mode drops them, so that mode's defaults apply.

No torch here: the CLI parses arguments with it before any model is loaded.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from .defaults import (DEFAULT_DENSE_MODE, DEFAULT_MODEL, DEFAULT_PRETRAINED, DEFAULT_SCALES,
                       RANDOM_WEIGHTS_SPELLINGS)
from .options import ModeDefaults, SegmentOptions, option_names
from .errors import MaskCLIPError
from .validation import check_probability

# options whose defaults depend on the dense mode: stored values belong to the project's stored mode
MODE_DEPENDENT = tuple(f.name for f in dataclasses.fields(ModeDefaults))


def parse_pretrained(value: str | None) -> str | None:
    """A weights choice as typed (open_clip tag or checkpoint path); 'none' / 'random' mean random weights
    (None, what `maskclip.load` takes)."""
    if value is None or value.strip().lower() in RANDOM_WEIGHTS_SPELLINGS:
        return None
    return value


def default_settings() -> dict:
    """The settings of a new project (a fresh copy): the default model and the method MaskCLIP's paper uses."""
    return {"model": {"name": DEFAULT_MODEL, "pretrained": DEFAULT_PRETRAINED, "dense_mode": DEFAULT_DENSE_MODE},
            "method": {"key_smoothing": True, "prompt_denoising": True, "pd_threshold": 0.5,
                       "scales": list(DEFAULT_SCALES)}}


def stored_dense_mode(settings: Mapping) -> str:
    """The dense mode a project's settings name (the default when they name none)."""
    return settings.get("model", {}).get("dense_mode", DEFAULT_DENSE_MODE)


def option_settings(settings: Mapping, dense_mode: str | None = None, overrides: Mapping | None = None) -> dict:
    """The `SegmentOptions` fields a project's settings set explicitly, as keyword arguments: the stored
    "method" values (those of `MODE_DEPENDENT` only when `dense_mode` is the stored mode or None), then
    `overrides` (None values ignored). Fields not in the result follow the dense mode's defaults."""
    stored_mode = stored_dense_mode(settings)
    mode = dense_mode or stored_mode
    method = settings.get("method", {})
    options = {k: method[k] for k in option_names() if method.get(k) is not None
               and (mode == stored_mode or k not in MODE_DEPENDENT)}
    options.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return options


def segment_options(settings: Mapping, dense_mode: str | None = None, overrides: Mapping | None = None
                    ) -> SegmentOptions:
    """`option_settings` as a validated `SegmentOptions` (unset fields None: the mode's defaults)."""
    return SegmentOptions.from_mapping(option_settings(settings, dense_mode, overrides))


def method_scales(settings: Mapping) -> list[int]:
    """The scales (short sides in pixels) of a project's settings."""
    return [int(s) for s in settings.get("method", {}).get("scales", list(DEFAULT_SCALES))]


def method_update(options: Mapping, scales: Sequence[int] | None = None) -> dict:
    """The inverse mapping: a settings update ({"method": {...}}, for `Project.update_settings`) storing the
    given `SegmentOptions` fields (validated names; None values left out) and the scales."""
    given = {k: v for k, v in options.items() if v is not None}
    stored = SegmentOptions.from_mapping(given).settings()
    method = {k: stored[k] for k in given}
    if scales is not None:
        method["scales"] = [int(s) for s in scales]
    return {"method": method}


def clip_spec(project, model: str | None = None, pretrained: str | None = None, dense_mode: str | None = None,
              quick_gelu: bool | None = None, options: dict | None = None) -> dict:
    """CLIP model and segmentation settings of a project, with a command line's overrides (None = the
    project's). `segment` holds `MaskCLIP.segment` keyword arguments: the background, the scales and the
    explicitly set `SegmentOptions` fields (the rest follow the dense mode). Overriding the dense mode with
    another one drops the stored mode-dependent options (KS, PD, temperature, windows): they were chosen
    for the stored mode."""
    settings = project.settings
    m = dict(settings.get("model", {}))
    if model is not None:
        m["name"] = model
    if pretrained is not None:
        m["pretrained"] = parse_pretrained(pretrained)
    mode = dense_mode or stored_dense_mode(settings)
    segment = option_settings(settings, mode, options)
    return {"model": m.get("name", DEFAULT_MODEL), "pretrained": m.get("pretrained", DEFAULT_PRETRAINED),
            "dense_mode": mode, "quick_gelu": m.get("quick_gelu") if quick_gelu is None else quick_gelu,
            "segment": {"background": list(project.background), "scales": method_scales(settings), **segment}}


LEARNERS = ("text-prior", "prototypes")  # maskclip.learner.LEARNERS (no torch here)
# weight: the prototypes' blend weight only (maskclip.prototypes.DEFAULT_WEIGHT); the text-prior learner
# (maskclip.learner, the default) has no weight to tune
LEARN_DEFAULTS = {"from_verified": False, "learner": "text-prior", "weight": 0.5}


def learn_spec(settings: dict, enabled: bool | None = None, weight: float | None = None,
               learner: str | None = None) -> dict:
    """Learning from verified pixels: a project's "learn" settings (project.settings) with overrides."""
    learn = {**LEARN_DEFAULTS, **settings.get("learn", {})}
    if enabled is not None:
        learn["from_verified"] = enabled
    if weight is not None:
        learn["weight"] = weight
    if learner is not None:
        learn["learner"] = learner
    weight = check_probability(learn["weight"], "the weight of the learned visual term")
    if learn["learner"] not in LEARNERS:
        raise MaskCLIPError(f"unknown learner {learn['learner']!r} in the project's settings; choose one of "
                            f"{', '.join(LEARNERS)}")
    return {"from_verified": bool(learn["from_verified"]), "learner": learn["learner"], "weight": weight}
