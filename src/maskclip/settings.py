"""How the CLI, the trainer and the annotator read a CLIP choice: the project's settings plus overrides.

No torch here: the CLI parses arguments with it before any model is loaded.
"""
from __future__ import annotations

import dataclasses

from .defaults import (DEFAULT_DENSE_MODE, DEFAULT_MODEL, DEFAULT_PRETRAINED, DEFAULT_SCALES,
                       RANDOM_WEIGHTS_SPELLINGS)
from .options import ModeDefaults, option_names
from .validation import check_probability

# options whose defaults depend on the dense mode: stored values belong to the project's stored mode
MODE_DEPENDENT = tuple(f.name for f in dataclasses.fields(ModeDefaults))


def parse_pretrained(value: str | None) -> str | None:
    """A weights choice as typed (open_clip tag or checkpoint path); 'none' / 'random' mean random weights
    (None, what `maskclip.load` takes)."""
    if value is None or value.strip().lower() in RANDOM_WEIGHTS_SPELLINGS:
        return None
    return value


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
    stored_mode = m.get("dense_mode", DEFAULT_DENSE_MODE)
    mode = dense_mode or stored_mode
    method = settings.get("method", {})
    segment = {k: method[k] for k in option_names() if method.get(k) is not None
               and (mode == stored_mode or k not in MODE_DEPENDENT)}
    segment.update({k: v for k, v in (options or {}).items() if v is not None})
    return {"model": m.get("name", DEFAULT_MODEL), "pretrained": m.get("pretrained", DEFAULT_PRETRAINED),
            "dense_mode": mode, "quick_gelu": m.get("quick_gelu") if quick_gelu is None else quick_gelu,
            "segment": {"background": list(project.background),
                        "scales": [int(s) for s in method.get("scales", list(DEFAULT_SCALES))], **segment}}


LEARN_DEFAULTS = {"from_verified": False, "weight": 0.5}  # maskclip.prototypes.DEFAULT_WEIGHT


def learn_spec(settings: dict, enabled: bool | None = None, weight: float | None = None) -> dict:
    """Learning from verified pixels: a project's "learn" settings (project.settings) with overrides."""
    learn = {**LEARN_DEFAULTS, **settings.get("learn", {})}
    if enabled is not None:
        learn["from_verified"] = enabled
    if weight is not None:
        learn["weight"] = weight
    weight = check_probability(learn["weight"], "the weight of the learned visual term")
    return {"from_verified": bool(learn["from_verified"]), "weight": weight}
