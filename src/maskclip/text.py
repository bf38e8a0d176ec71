"""Class prompts: validation, the 85-template ensemble and cached class text embeddings.

A class is one or more names (synonyms). Each name is put into every template, the prompt embeddings are
L2-normalised and averaged, and the mean is re-normalised; a class with synonyms averages its names'
embeddings the same way, so every class is one unit vector (one row of a 1x1 convolution).
"""
from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from .errors import MaskCLIPError

# The 80 prompts of OpenAI's ImageNet zero-shot classifier plus the 5 scene prompts MaskCLIP adds.
SCENE_TEMPLATES = (
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
)
TEMPLATES: tuple[str, ...] = tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES) + SCENE_TEMPLATES

ClassSpec = str | Sequence[str]
MAX_OUTPUT_CLASSES = 255  # label value 255 means unlabelled, so class indices end at 254


def normalize_classes(classes: Iterable[ClassSpec], what: str = "class") -> list[tuple[str, ...]]:
    """Validated classes as tuples of stripped names; blank or duplicate names are errors, not surprises."""
    if isinstance(classes, str):
        raise MaskCLIPError(f"{what} list must be a list of names, not the single string {classes!r}")
    result: list[tuple[str, ...]] = []
    seen: dict[str, int] = {}
    for index, spec in enumerate(classes):
        names = (spec,) if isinstance(spec, str) else tuple(spec)
        names = tuple(str(n).strip() for n in names)
        if not names or any(not n for n in names):
            raise MaskCLIPError(f"{what} {index + 1} has an empty or blank name: {spec!r}")
        for name in names:
            folded = name.casefold()
            if folded in seen:
                raise MaskCLIPError(
                    f"duplicate {what} name '{name}' (entries {seen[folded] + 1} and {index + 1}); names must be "
                    f"unique, ignoring case")
            seen[folded] = index
        result.append(names)
    return result


def prompt_rows(classes: Iterable[ClassSpec], background: Iterable[str], split_synonyms: bool = False
                ) -> tuple[list[list[str]], list[int], list[str], int | None]:
    """How classes and background prompts become text-embedding rows and output classes (MaskCLIP's
    `segment` and the MaskCLIP+ student's classifier both follow it).

    Returns (rows: the names of each row, row_class: the output class of each row, class names,
    index of the background class or None). User classes come first, in order; background prompts that
    no user class already names become extra rows merged (max) into the user class called "background"
    or, when there is none, into an appended "background" class. `split_synonyms` gives each synonym its
    own row (merged by max like the background prompts, as SCLIP / ClearCLIP / NACLIP do) instead of one
    row averaging the class's names.
    """
    user = normalize_classes(classes)
    if not user:
        raise MaskCLIPError("no classes given")
    taken = {n.casefold() for names in user for n in names}
    bg = [n for (n,) in normalize_classes([[b] for b in background], what="background prompt")
          if n.casefold() not in taken]
    if split_synonyms:
        rows = [[n] for names in user for n in names]
        row_class = [c for c, names in enumerate(user) for _ in names]
    else:
        rows = [list(names) for names in user]
        row_class = list(range(len(user)))
    names = [names[0] for names in user]
    bg_index = next((i for i, ns in enumerate(user) if any(n.casefold() == "background" for n in ns)), None)
    if bg:
        if bg_index is None:
            bg_index = len(names)
            names.append("background")
        rows += [[b] for b in bg]
        row_class += [bg_index] * len(bg)
    if len(names) > MAX_OUTPUT_CLASSES:
        raise MaskCLIPError(
            f"{len(names)} classes{' (with background)' if bg and bg_index == len(names) - 1 else ''}; label images "
            f"hold at most {MAX_OUTPUT_CLASSES} (indices 0..254, 255 = unlabelled): use at most "
            f"{MAX_OUTPUT_CLASSES - 1} classes plus background")
    return rows, row_class, names, bg_index


def parse_classes_text(text: str) -> list[list[str]]:
    """One class per line, synonyms separated by commas; blank lines and lines starting with '#' are skipped."""
    classes = [[n.strip() for n in line.split(",")] for line in text.splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    normalize_classes(classes)  # validate early, with line-independent messages
    return classes


def check_name_characters(classes, where: str) -> None:
    """Refuse control characters (newlines, tabs, NUL ...) in class names: they break labels.txt and CLIs."""
    for index, spec in enumerate(classes):
        spec = spec["name"] if isinstance(spec, dict) else spec
        for name in (spec,) if isinstance(spec, str) else spec:
            if isinstance(name, str) and any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
                raise MaskCLIPError(f"{where}: class {index + 1} ({name!r}) contains a control character "
                                    "(newline, tab, ...); class names must be plain text")


def read_classes_file(path: str | Path) -> list:
    """Classes from a file, for `segment` and `project init`: a text file (one class per line, synonyms
    comma-separated), a JSON list of names or of lists of synonyms, or a classes.json object
    ({"classes": [...], "colors": [...]}, whose classes come back as {"name", "colour"} dicts)."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        classes = parse_classes_file(path)
    else:
        import json

        from .labels_io import read_classes_json

        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, ValueError):
            data = None  # read_classes_json says what is wrong
        if isinstance(data, list):
            if not data or not all(isinstance(c, str) or (isinstance(c, list) and c and all(isinstance(n, str)
                                                                                           for n in c)) for c in data):
                raise MaskCLIPError(f"classes file {path}: a JSON list must hold class names or lists of synonyms "
                                    '(e.g. ["road", ["car", "automobile"]])')
            classes = data
            normalize_classes(classes)
        else:
            data = read_classes_json(path)
            classes = [{"name": n, "colour": c} for n, c in zip(data["classes"], data["colors"])]
    check_name_characters(classes, f"classes file {path}")
    return classes


def parse_classes_file(path: str | Path) -> list[list[str]]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # -sig: a UTF-8 BOM is not part of the first name
    except OSError as exc:
        raise MaskCLIPError(f"cannot read classes file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise MaskCLIPError(f"classes file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    classes = parse_classes_text(text)
    if not classes:
        raise MaskCLIPError(f"classes file {path} lists no classes (one class per line expected)")
    return classes


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


class TextEncoder:
    """Template-ensembled name embeddings, computed once per name and kept for the model's lifetime."""

    def __init__(self, clip_model: torch.nn.Module, tokenizer, device: torch.device,
                 templates: Sequence[str] = TEMPLATES, batch_size: int = 256):
        self.clip = clip_model
        self.tokenizer = tokenizer
        self.device = device
        self.templates = tuple(templates)
        self.batch_size = batch_size
        self.prompts_encoded = 0  # how many prompts went through the text tower (tests check caching with it)
        self._names: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()

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

    def has_names(self, names: Iterable[str]) -> bool:
        """Whether every name is already embedded (no text-encoder work needed)."""
        with self._lock:
            return all(n in self._names for n in names)

    def name_embeddings(self, names: Sequence[str]) -> torch.Tensor:
        """[N, D] unit vectors, one per name."""
        with self._lock:
            missing = list(dict.fromkeys(n for n in names if n not in self._names))
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
