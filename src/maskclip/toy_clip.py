"""A contrastively trained tiny CLIP on synthetic scenes: real end-to-end semantics without downloads.

No CLIP weights can be obtained offline, and random weights segment nothing, so quality (MaskCLIP vs a
naive baseline, KS/PD, learning from verified pixels, the MaskCLIP+ student) cannot be measured with them.
This module draws scenes of 1-3 coloured shapes (4 colours x 3 shapes) on textured low-saturation
backgrounds, captions them ("a red circle and a blue square"), and trains the open_clip architecture
`maskclip-toy-clip` (model_configs/maskclip-toy-clip.json, ~8M parameters, 64x64 input, patch 8) with a
CLIP loss in which captions naming the same set of shapes count as positives. Every scene also has a
ground-truth label map, so dense predictions can be scored.

The checkpoint is built on demand and cached outside the repository (`~/.cache/maskclip/`, or
$MASKCLIP_TOY_CLIP_DIR); it is an open_clip state dict, so `maskclip.load(MODEL_NAME, pretrained=path)`
loads it. Build it with `python -m maskclip.toy_clip` (about 15 minutes on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MODEL_NAME = "maskclip-toy-clip"
IMAGE_SIZE = 64
COLOURS = {"red": (215, 45, 40), "green": (45, 175, 60), "blue": (40, 75, 215), "yellow": (225, 205, 40)}
SHAPES = ("circle", "square", "triangle")
CLASS_NAMES = [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]  # label i <-> CLASS_NAMES[i]
BACKGROUND_PROMPTS = ("background",)  # merged into the appended class 12 ("background") by `segment`
BACKGROUND_LABEL = len(CLASS_NAMES)
NUM_LABELS = len(CLASS_NAMES) + 1
TRAIN_SEED = 0
HELD_OUT_SEED = 1_000_003  # held-out scenes come from a different random stream than the training scenes
RECIPE = {"steps": 1400, "batch_size": 128, "lr": 1e-3, "warmup": 100, "weight_decay": 0.05, "seed": TRAIN_SEED}
RECIPE_VERSION = 1  # bump when scenes, captions or the recipe change: the cached checkpoint name follows it


@dataclass
class Scene:
    image: np.ndarray  # uint8 [64, 64, 3]
    labels: np.ndarray  # uint8 [64, 64]: index into CLASS_NAMES, BACKGROUND_LABEL elsewhere
    objects: tuple[int, ...]  # class indices present, in drawing order
    caption: str


_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5


def _shape_mask(shape: str, cy: float, cx: float, r: float) -> np.ndarray:
    if shape == "circle":
        return (_YY - cy) ** 2 + (_XX - cx) ** 2 <= r * r
    if shape == "square":
        half = r * 0.85
        return (np.abs(_YY - cy) <= half) & (np.abs(_XX - cx) <= half)
    top, bottom = cy - r, cy + r  # upright isosceles triangle: apex on top, base 2r wide
    return (_YY >= top) & (_YY <= bottom) & (np.abs(_XX - cx) <= (_YY - top) * 0.5 * 1.15)


def _background(rng: np.random.Generator) -> np.ndarray:
    """A low-saturation grey with a smooth blotchy texture, sometimes stripes, and pixel noise."""
    grey = rng.uniform(70, 190)
    tint = rng.uniform(-14, 14, size=3)
    coarse = rng.normal(0, 1, size=(1, 1, rng.integers(3, 9), rng.integers(3, 9)))
    blotch = F.interpolate(torch.from_numpy(coarse).float(), size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic",
                           align_corners=False)[0, 0].numpy()
    texture = blotch * rng.uniform(6, 22)
    if rng.random() < 0.3:
        angle, period = rng.uniform(0, math.pi), rng.uniform(5, 14)
        texture += rng.uniform(4, 12) * np.sin((_XX * math.cos(angle) + _YY * math.sin(angle)) * 2 * math.pi / period)
    image = grey + tint[None, None, :] + texture[..., None] + rng.normal(0, 4, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
    return image


def caption_for(objects: tuple[int, ...], rng: np.random.Generator | None = None) -> str:
    """'a red circle', 'a red circle and a blue square', 'a red circle, a blue square and a green triangle';
    with `rng`, the order is shuffled and half the captions are put into a CLIP prompt template."""
    names = [CLASS_NAMES[i] for i in objects]
    if rng is not None:
        names = [names[i] for i in rng.permutation(len(names))]
    phrase = names[0] if len(names) == 1 else ", a ".join(names[:-1]) + " and a " + names[-1]
    if rng is None or rng.random() < 0.5:
        return f"a {phrase}"
    from .text import TEMPLATES

    return TEMPLATES[rng.integers(len(TEMPLATES))].format(phrase)


def render_scene(rng: np.random.Generator) -> Scene:
    """One random scene: 1-3 distinct coloured shapes (later ones on top) on a textured background."""
    image = _background(rng)
    labels = np.full((IMAGE_SIZE, IMAGE_SIZE), BACKGROUND_LABEL, np.uint8)
    count = int(rng.integers(1, 4))
    objects = tuple(int(i) for i in rng.choice(len(CLASS_NAMES), size=count, replace=False))
    for index in objects:
        colour, shape = divmod(index, len(SHAPES))
        r = rng.uniform(7, 15)
        cy, cx = rng.uniform(r * 0.6, IMAGE_SIZE - r * 0.6, size=2)
        mask = _shape_mask(SHAPES[shape], cy, cx, r)
        rgb = np.array(list(COLOURS.values())[colour], np.float32) + rng.uniform(-22, 22, size=3)
        image[mask] = rgb + rng.normal(0, 5, size=(int(mask.sum()), 3))
        labels[mask] = index
    image = np.clip(image, 0, 255).astype(np.uint8)
    return Scene(image, labels, objects, caption_for(objects, rng))


def held_out_scenes(count: int, seed: int = HELD_OUT_SEED) -> list[Scene]:
    """Scenes the model never saw during training (a separate random stream)."""
    rng = np.random.default_rng(seed)
    return [render_scene(rng) for _ in range(count)]


def cache_dir() -> Path:
    return Path(os.environ.get("MASKCLIP_TOY_CLIP_DIR", Path.home() / ".cache" / "maskclip"))


def checkpoint_path(steps: int = RECIPE["steps"], batch_size: int = RECIPE["batch_size"]) -> Path:
    """Where the checkpoint of this recipe (or of a shorter variant) lives; it may not exist yet."""
    return cache_dir() / f"toy-clip-v{RECIPE_VERSION}-{steps}x{batch_size}.pt"


def find_checkpoint() -> Path | None:
    """The cached checkpoint of the full recipe; else the most trained shorter build (a trial run on a busy
    machine); None when there is none (tests then skip, benchmarks say how to build one)."""
    full = checkpoint_path()
    if full.is_file():
        return full

    def samples(path: Path) -> int:
        steps, batch = path.stem.rsplit("-", 1)[1].split("x")
        return int(steps) * int(batch)
    builds = [p for p in cache_dir().glob(f"toy-clip-v{RECIPE_VERSION}-*x*.pt") if not p.name.endswith(".partial.pt")]
    builds.sort(key=samples)
    return builds[-1] if builds else None


def _multi_positive_loss(image_emb, text_emb, objects: list[tuple[int, ...]], logit_scale):
    """Symmetric CLIP cross-entropy whose targets spread over every caption naming the same set of shapes."""
    keys = [frozenset(o) for o in objects]
    positives = torch.tensor([[a == b for b in keys] for a in keys], dtype=torch.float32)
    logits = logit_scale * image_emb @ text_emb.t()
    targets = positives / positives.sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets.t()))


def _batch(rng: np.random.Generator, size: int, model, tokenizer):
    from .weights import clip_mean_std

    scenes = [render_scene(rng) for _ in range(size)]
    mean, std = clip_mean_std(model)
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    images = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return images, tokenizer([s.caption for s in scenes]), [s.objects for s in scenes]


def train(out: str | os.PathLike | None = None, *, steps: int = RECIPE["steps"],
          batch_size: int = RECIPE["batch_size"], lr: float = RECIPE["lr"], warmup: int = RECIPE["warmup"],
          weight_decay: float = RECIPE["weight_decay"], seed: int = RECIPE["seed"], log_every: int = 50,
          save_every: int = 0, log=print) -> Path:
    """Train the toy CLIP and write its open_clip state dict (default: `checkpoint_path(steps)`).

    save_every > 0 also writes `<out>.partial.pt` every that many steps (to look at a long run early)."""
    import open_clip

    from . import weights  # noqa: F401  registers the model configs with open_clip
    from .atomic import atomic_write

    out = Path(out) if out is not None else checkpoint_path(steps, batch_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = open_clip.create_model(MODEL_NAME, pretrained=None)
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    schedule = lambda step: (step + 1) / warmup if step < warmup else \
        0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        images, tokens, objects = _batch(rng, batch_size, model, tokenizer)
        image_emb = F.normalize(model.encode_image(images), dim=-1)
        text_emb = F.normalize(model.encode_text(tokens), dim=-1)
        loss = _multi_positive_loss(image_emb, text_emb, objects, model.logit_scale.exp().clamp(max=100))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            elapsed = time.perf_counter() - start
            log(f"step {step + 1}/{steps} loss {loss.item():.3f} scale {model.logit_scale.exp().item():.1f} "
                f"{elapsed:.0f}s (eta {elapsed / (step + 1) * (steps - step - 1):.0f}s)")
        if save_every and (step + 1) % save_every == 0 and step + 1 < steps:
            with atomic_write(out.with_suffix(".partial.pt"), "wb") as f:
                torch.save(model.state_dict(), f)
    model.eval()
    with atomic_write(out, "wb") as f:
        torch.save(model.state_dict(), f)
    meta = {"recipe_version": RECIPE_VERSION, "steps": steps, "batch_size": batch_size, "lr": lr,
            "warmup": warmup, "weight_decay": weight_decay, "seed": seed,
            "train_seconds": round(time.perf_counter() - start, 1), "torch_threads": torch.get_num_threads()}
    with atomic_write(out.with_suffix(".json"), "w") as f:
        json.dump(meta, f, indent=2)
    return out


def retrieval_accuracy(model, scenes: list[Scene]) -> float:
    """Image -> text top-1 over the scenes' canonical captions; a caption naming the same set counts as a hit.

    `model` is a `maskclip.MaskCLIP` wrapping the toy CLIP.
    """
    captions = [caption_for(s.objects) for s in scenes]
    with torch.inference_mode():
        images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
        image_emb = F.normalize(model.clip.encode_image(model.normalize(images.to(model.device))), dim=-1)
        tokens = model.text.tokenizer(captions).to(model.device)
        text_emb = F.normalize(model.clip.encode_text(tokens), dim=-1)
    best = (image_emb @ text_emb.t()).argmax(dim=1).cpu().tolist()
    return float(np.mean([frozenset(scenes[b].objects) == frozenset(s.objects) for s, b in zip(scenes, best)]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maskclip.toy_clip", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help=f"checkpoint file (default: {checkpoint_path()})")
    parser.add_argument("--steps", type=int, default=RECIPE["steps"])
    parser.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    parser.add_argument("--force", action="store_true", help="train even when the checkpoint exists")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: this model's matrices are so small that a second "
                             "thread costs ~3x the CPU time for little speed)")
    parser.add_argument("--save-every", type=int, default=0, help="also write <out>.partial.pt every N steps")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    out = Path(args.out) if args.out else checkpoint_path(args.steps, args.batch_size)
    if out.is_file() and not args.force:
        print(f"{out} exists (use --force to train again)")
        return 0
    path = train(out, steps=args.steps, batch_size=args.batch_size, save_every=args.save_every)
    import maskclip

    model = maskclip.load(MODEL_NAME, pretrained=path, device="auto")
    print(f"wrote {path}; held-out image-text retrieval {retrieval_accuracy(model, held_out_scenes(500)):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
