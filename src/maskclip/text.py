"""Class prompts: validation, the 85-template ensemble and cached class text embeddings.

A class is one or more names (synonyms). Each name is put into every template, the prompt embeddings are
L2-normalised and averaged, and the mean is re-normalised; a class with synonyms averages its names'
embeddings the same way, so every class is one unit vector (one row of a 1x1 convolution).

With a cache folder, each name's embedding is also kept on disk (`<cache>/text/`, one small file per name),
keyed by the model's signature (architecture, weights identity, activation), the template set and the name:
a later run, project or annotator session with the same weights embeds nothing again.
"""
from __future__ import annotations

import hashlib
import threading
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from .cache import FeatureCache
from .errors import MaskCLIPError
# Class lists, prompt rows and classes files live in the torch-free maskclip.prompts; re-exported here.
from .prompts import (MAX_OUTPUT_CLASSES, ClassSpec, normalize_classes, parse_classes_file,  # noqa: F401
                      parse_classes_text, prompt_rows)

# The 80 prompts of OpenAI's ImageNet zero-shot classifier plus the 5 scene prompts MaskCLIP adds.
SCENE_TEMPLATES = (
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
)
TEMPLATES: tuple[str, ...] = tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES) + SCENE_TEMPLATES

def encode_text_cropped(clip_model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """`clip_model.encode_text(tokens)`, computed only up to the batch's last end-of-text token.

    Prompts are padded to the full context (77 tokens) but the templates' prompts are ~10-20 tokens long.
    In a causal text transformer pooled at the end-of-text token, the padding after that token cannot
    change the pooled feature, so cropping it gives the same embedding for ~4x less work (this is what
    makes adding a class cheap on a CPU). Towers that are not causal or pool elsewhere run uncropped.
    """
    pool = getattr(clip_model, "text_pool_type", None)
    parts = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    if getattr(clip_model, "attn_mask", None) is None or pool not in ("argmax", "eos") \
            or (pool == "eos" and getattr(clip_model, "text_eos_id", None) is None) \
            or not all(hasattr(clip_model, a) for a in parts):
        return clip_model.encode_text(tokens)
    if pool == "argmax":
        ends = tokens.argmax(dim=-1)
    else:
        ends = (tokens == clip_model.text_eos_id).int().argmax(dim=-1)
    n = int(ends.max()) + 1
    cast_dtype = clip_model.transformer.get_cast_dtype()
    x = clip_model.token_embedding(tokens[:, :n]).to(cast_dtype)
    x = x + clip_model.positional_embedding[:n].to(cast_dtype)
    x = clip_model.ln_final(clip_model.transformer(x, attn_mask=clip_model.attn_mask[:n, :n]))
    x = x[torch.arange(x.shape[0], device=x.device), ends]
    projection = clip_model.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


TEXT_FORMAT = 1  # bump when stored name embeddings change meaning
TEXT_CACHE_SUBFOLDER = "text"


def templates_digest(templates: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(templates).encode()).hexdigest()


class TextEncoder:
    """Template-ensembled name embeddings, computed once per name and kept for the model's lifetime, and on
    disk when `cache_dir` is given together with the model's `signature` (what the embeddings depend on
    besides the templates and the name: model, weights identity, activation)."""

    def __init__(self, clip_model: torch.nn.Module, tokenizer, device: torch.device,
                 templates: Sequence[str] = TEMPLATES, batch_size: int = 256, *,
                 cache_dir: str | Path | None = None, signature: dict | None = None):
        self.clip = clip_model
        self.tokenizer = tokenizer
        self.device = device
        self.templates = tuple(templates)
        self.batch_size = batch_size
        self.prompts_encoded = 0  # how many prompts went through the text tower (tests check caching with it)
        self._names: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()
        self.disk: FeatureCache | None = None
        if cache_dir is not None and signature is not None:
            self.disk = FeatureCache({**signature, "templates": templates_digest(self.templates),
                                      "text_format": TEXT_FORMAT},
                                     max_bytes=16 << 20, disk_dir=Path(cache_dir) / TEXT_CACHE_SUBFOLDER)

    def _context_length(self) -> int:
        return int(getattr(self.tokenizer, "context_length", None) or getattr(self.clip, "context_length", 77))

    def _warn_if_truncated(self, name: str) -> None:
        encode = getattr(self.tokenizer, "encode", None)
        if encode is None:
            return
        longest = max(len(encode(t.format(name))) for t in self.templates) + 2  # + start/end tokens
        if longest > self._context_length():
            warnings.warn(
                f"class name '{name[:40]}...' is too long for the text encoder ({longest} > "
                f"{self._context_length()} tokens); its prompts are truncated", stacklevel=4)

    @torch.inference_mode()
    def _encode_names(self, names: list[str]) -> None:
        for name in names:
            self._warn_if_truncated(name)
        prompts = [t.format(n) for n in names for t in self.templates]
        chunks = []
        for start in range(0, len(prompts), self.batch_size):
            tokens = self.tokenizer(prompts[start:start + self.batch_size]).to(self.device)
            chunks.append(F.normalize(encode_text_cropped(self.clip, tokens).float(), dim=-1))
        self.prompts_encoded += len(prompts)
        per_prompt = torch.cat(chunks).view(len(names), len(self.templates), -1)
        for name, emb in zip(names, F.normalize(per_prompt.mean(dim=1), dim=-1)):
            self._names[name] = emb
            if self.disk is not None:
                self.disk.put(name, {"embedding": emb})

    def _load_stored(self, names: list[str]) -> list[str]:
        """Take what the disk cache has; returns the names still missing."""
        if self.disk is None:
            return names
        for name in names:
            entry = self.disk.get(name)
            if entry is not None:
                self._names[name] = entry["embedding"].to(self.device)
        return [n for n in names if n not in self._names]

    def has_names(self, names: Iterable[str]) -> bool:
        """Whether every name is already embedded (no text-encoder work needed)."""
        with self._lock:
            return all(n in self._names for n in names)

    def name_embeddings(self, names: Sequence[str]) -> torch.Tensor:
        """[N, D] unit vectors, one per name."""
        with self._lock:
            missing = self._load_stored(list(dict.fromkeys(n for n in names if n not in self._names)))
            if missing:
                self._encode_names(missing)
            return torch.stack([self._names[n] for n in names])

    def class_embeddings(self, classes: Iterable[ClassSpec]) -> torch.Tensor:
        """[K, D] unit vectors, one per class (synonyms averaged)."""
        normalized = normalize_classes(classes)
        if not normalized:
            raise MaskCLIPError("no classes given")
        rows = [self.name_embeddings(list(names)).mean(dim=0) for names in normalized]
        return F.normalize(torch.stack(rows), dim=-1)
