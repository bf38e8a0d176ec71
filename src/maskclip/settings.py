"""How the CLI, the trainer and the annotator read a CLIP choice: the project's settings plus overrides.

No torch here: the CLI parses arguments with it before any model is loaded.
"""
from __future__ import annotations

RANDOM_WEIGHTS_SPELLINGS = ("none", "random")


def parse_pretrained(value: str | None) -> str | None:
    """A weights choice as typed (open_clip tag or checkpoint path); 'none' / 'random' mean random weights
    (None, what `maskclip.load` takes)."""
    if value is None or value.strip().lower() in RANDOM_WEIGHTS_SPELLINGS:
        return None
    return value


def clip_spec(project, model: str | None = None, pretrained: str | None = None) -> dict:
    """CLIP model and MaskCLIP settings of a project, with a command line's --model / --pretrained."""
    settings = project.settings
    m = dict(settings.get("model", {}))
    if model is not None:
        m["name"] = model
    if pretrained is not None:
        m["pretrained"] = parse_pretrained(pretrained)
    method = settings.get("method", {})
    return {"model": m.get("name", "ViT-B-16"), "pretrained": m.get("pretrained", "openai"),
            "dense_mode": m.get("dense_mode", "maskclip"),
            "segment": {"background": list(project.background),
                        "key_smoothing": bool(method.get("key_smoothing", True)),
                        "prompt_denoising": bool(method.get("prompt_denoising", True)),
                        "pd_threshold": float(method.get("pd_threshold", 0.5)),
                        "scales": [int(s) for s in method.get("scales", [336])]}}


LEARN_DEFAULTS = {"from_verified": False, "weight": 0.5}  # maskclip.prototypes.DEFAULT_WEIGHT


def learn_spec(settings: dict, enabled: bool | None = None, weight: float | None = None) -> dict:
    """Learning from verified pixels: a project's "learn" settings (project.settings) with overrides."""
    learn = {**LEARN_DEFAULTS, **settings.get("learn", {})}
    if enabled is not None:
        learn["from_verified"] = enabled
    if weight is not None:
        learn["weight"] = weight
    weight = float(learn["weight"])
    if not 0.0 <= weight <= 1.0:
        from .errors import MaskCLIPError

        raise MaskCLIPError(f"the weight of the learned visual term must lie in [0, 1], got {weight}")
    return {"from_verified": bool(learn["from_verified"]), "weight": weight}
