"""Learning from verified pixels (maskclip.prototypes): what a few verified images add to MaskCLIP's text.

Two settings, each scored by mIoU (maskclip.metrics) on images never used for teaching:
* toy: the contrastively trained tiny CLIP (`python -m maskclip.toy_clip` builds it, ~8M parameters) on
  held-out synthetic scenes (12 coloured-shape classes + background, 64x64, scale 64). Its text is real, so
  this shows text + learned term. Also: image-text retrieval, MaskCLIP vs the naive baseline (last-layer
  patch tokens) and the value path alone, key smoothing / prompt denoising, and every dense mode with the
  learned term blended as maskclip.prototypes does it and as it did before (raw visual cosines).
* camvid: ViT-B-16 with random weights (no CLIP weights offline) on CamVid val (11 classes, short side
  336). Random text means nothing, so everything above chance comes from the learned visual term.
Teaching images are fully verified (their ground truth is the verified mask); 1 and 5 images are drawn
several times and averaged. "update" is the time to take one brush stroke into the prototypes (features
in memory), "redraw" the time of a cached-feature segmentation with and without the learned term.

    .venv/bin/python bench/bench_learn_from_verified.py --write [--dataset toy camvid] [--dense-mode maskclip]
"""
from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import machine_line, timed, write_section  # noqa: E402

import maskclip  # noqa: E402
from maskclip.options import DENSE_MODE_NAMES  # noqa: E402
from maskclip import toy_clip  # noqa: E402
from maskclip.backbone import maskclip_last_block  # noqa: E402
from maskclip.images import read_image  # noqa: E402
from maskclip.labels_io import read_classes_json, read_label_image  # noqa: E402
from maskclip.metrics import confusion_matrix, scores_from_confusion  # noqa: E402
from maskclip.prototypes import ClassPrototypes, LearnedTerm, check_weight  # noqa: E402

CAMVID = ROOT / ".." / "shared" / "data" / "camvid"
HEADINGS = {"toy": "## Learning from verified pixels: toy CLIP (bench/bench_learn_from_verified.py)",
            "camvid": "## Learning from verified pixels: CamVid, random ViT-B-16 (bench/bench_learn_from_verified.py)"}
COUNTS = (0, 1, 5, 20)
WEIGHTS = (0.25, 0.5, 0.75, 1.0)


# --- baselines of the toy comparison (bench-only last blocks; see backbone.DENSE_MODES) --------------
def naive_last_block(block, x, grid):
    """No change to CLIP: the last block's normal output tokens (what MaskCLIP improves on)."""
    return block(x), maskclip_last_block(block, x, grid)[1]


def value_path_last_block(block, x, grid):
    """The value path alone: out_proj(v), without the residual and the MLP."""
    attn = block.attn
    _q, k, v = torch.nn.functional.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    return attn.out_proj(v), attn.out_proj(k)


def with_last_block(model, last_block):
    """The same weights with another last block in place of the maskclip mode's (its own in-memory feature
    cache, so nothing is mixed up with the real model's)."""
    other = maskclip.MaskCLIP(model.clip, model.text.tokenizer, model_name=model.model_name,
                              weights_id=model.weights_id, device=model.device, dense_mode="maskclip")
    other._encoder("maskclip").last_block = last_block
    return other


# --- scoring -----------------------------------------------------------------------------------------
def miou(model, items, classes, background, num_classes, learned=None, **options) -> float:
    cm = 0
    for image, gt in items:
        seg = model.segment(image, classes, background=background, learned=learned, **options)
        cm = cm + confusion_matrix(gt, seg.labels, num_classes)
    return scores_from_confusion(cm, [str(i) for i in range(num_classes)])["mIoU"]


def teach(model, items, class_names, scales) -> ClassPrototypes:
    prototypes = ClassPrototypes()
    for i, (image, gt) in enumerate(items):
        maps = model.image_features(image, scales=scales)
        prototypes.set_image(str(i), [m["features"] for m in maps], gt, gt != 255, class_names)
    return prototypes


@dataclass(frozen=True)
class RawBlendTerm(LearnedTerm):
    """The learned term as first built (bench-only baseline): raw visual cosines blended into the text
    cosines, (1 - w) * t_c + w * v_c for known classes."""

    def blend(self, scores, features, row_names):
        weight = check_weight(self.weight)
        known, vectors = self.prototypes.vectors(row_names)
        if weight == 0.0 or not known.any():
            return scores
        visual = vectors[known] @ torch.nn.functional.normalize(features, dim=0)
        out = scores.clone()
        out[known] = (1.0 - weight) * scores[known] + weight * visual
        return out


def learning_rows(model, eval_items, pool, classes, background, class_names, options, draws, weights,
                  term=LearnedTerm) -> list[list[str]]:
    """mIoU per number of taught images (rows) and weight (columns); 1 and 5 averaged over draws."""
    rng = np.random.default_rng(0)
    text_only = miou(model, eval_items, classes, background, len(class_names), **options)
    rows = [["0 (text only)"] + [f"{text_only:.3f}"] * len(weights)]
    for count in COUNTS[1:]:
        if count > len(pool):
            continue
        repeats = 1 if count == len(pool) else draws
        scores = {w: [] for w in weights}
        for _ in range(repeats):
            chosen = [pool[i] for i in rng.choice(len(pool), size=count, replace=False)]
            prototypes = teach(model, chosen, class_names, options["scales"])
            for w in weights:
                scores[w].append(miou(model, eval_items, classes, background, len(class_names),
                                      learned=term(prototypes, w), **options))
        label = f"{count}" + (f" (mean of {repeats})" if repeats > 1 else "")
        rows.append([label] + [f"{statistics.mean(scores[w]):.3f}" for w in weights])
        print(rows[-1], flush=True)
    return rows


def modes_table(path, eval_items, pool, classes, background, names, scales, draws, weight=0.5) -> str:
    """Per dense mode (its own default options): text only, then the learned term from 1/5/20/40 verified
    images at `weight`, blended as now (levelled) and as before (raw cosines)."""
    header = ["dense mode", "text only"] + [f"{n} verified: levelled / raw" for n in (1, 5, 20, 40)]
    rows = []
    for mode in DENSE_MODE_NAMES:
        model = maskclip.load(toy_clip.MODEL_NAME, pretrained=path, device="auto", dense_mode=mode)
        score = lambda learned=None: miou(model, eval_items, classes, background, len(names), learned=learned,  # noqa: E731
                                          scales=scales)
        rng = np.random.default_rng(0)
        cells = [mode, f"{score():.3f}"]
        for count in (1, 5, 20, 40):
            chosen = [[pool[i] for i in rng.choice(len(pool), count, replace=False)]
                      for _ in range(draws if count < len(pool) else 1)]
            taught = [teach(model, c, names, scales) for c in chosen]
            levelled = statistics.mean(score(LearnedTerm(p, weight)) for p in taught)
            raw = statistics.mean(score(RawBlendTerm(p, weight)) for p in taught)
            cells.append(f"{levelled:.3f} / {raw:.3f}")
        rows.append(cells)
        print(cells, flush=True)
    return table(header, rows)


def patch_data(model, items, scales):
    """Unit dense features [P, D] and the ground-truth class of each patch (nearest pixel), void dropped."""
    xs, ys = [], []
    for image, gt in items:
        features = model.image_features(image, scales=scales)[0]["features"]
        grid = torch.nn.functional.interpolate(torch.from_numpy(gt)[None, None].float(), size=features.shape[1:],
                                               mode="nearest")[0, 0].long().flatten()
        xs.append(torch.nn.functional.normalize(features.flatten(1), dim=0).T)
        ys.append(grid)
    x, y = torch.cat(xs), torch.cat(ys)
    return x[y != 255], y[y != 255]


def classifier_table(model, train_items, eval_items, num_classes, scales) -> str:
    """Patch-level mIoU of the visual term's candidates, taught by the same verified images: class means
    (plain cosines, what maskclip.prototypes uses, and centred ones), ridge regression and logistic regression
    on standardised features; with fit times."""
    F = torch.nn.functional
    x, y = patch_data(model, train_items, scales)
    xv, yv = patch_data(model, eval_items, scales)

    def score(pred):
        cm = confusion_matrix(yv.numpy(), pred.numpy(), num_classes)
        return f"{scores_from_confusion(cm, [str(i) for i in range(num_classes)])['mIoU']:.3f}"

    rows = []
    start = time.perf_counter()
    means = torch.stack([x[y == c].mean(0) if (y == c).any() else torch.zeros(x.shape[1]) for c in range(num_classes)])
    centre = x.mean(0)
    fit = time.perf_counter() - start
    rows.append(["class means, cosine", score((xv @ F.normalize(means, dim=1).T).argmax(1)), f"{1000 * fit:.1f} ms"])
    centred = F.normalize(xv - centre, dim=1) @ F.normalize(means - centre, dim=1).T
    rows.append(["class means, centred cosine", score(centred.argmax(1)), f"{1000 * fit:.1f} ms"])
    sd = x.std(0) + 1e-6
    z, zv = (x - centre) / sd, (xv - centre) / sd
    start = time.perf_counter()
    a = torch.cat([z, torch.ones(len(z), 1)], 1)
    w = torch.linalg.solve(a.T @ a + 100 * torch.eye(a.shape[1]), a.T @ F.one_hot(y, num_classes).float())
    fit = time.perf_counter() - start
    rows.append(["ridge (lambda 100)", score((torch.cat([zv, torch.ones(len(zv), 1)], 1) @ w).argmax(1)),
                 f"{1000 * fit:.1f} ms"])
    weights = torch.zeros(z.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=100)

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weights + bias, y) + 1e-3 * (weights ** 2).sum()
        loss.backward()
        return loss

    start = time.perf_counter()
    optimizer.step(closure)
    fit = time.perf_counter() - start
    with torch.no_grad():
        rows.append(["logistic regression (L-BFGS, 100 it.)", score((zv @ weights + bias).argmax(1)),
                     f"{1000 * fit:.0f} ms"])
    return table([f"visual term ({len(y)} verified patches)", "patch mIoU", "fit"], rows)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def stroke_timing(model, image, gt, classes, background, class_names, options, prototypes) -> str:
    """One brush stroke (9 px wide, across the image) into the prototypes, and cached-feature redraws."""
    model.segment(image, classes, background=background, **options)  # features in memory
    stroke = np.zeros(gt.shape, bool)
    row = gt.shape[0] // 2
    stroke[row - 4:row + 5] = True
    verified = stroke & (gt != 255)

    def update():
        maps = model.image_features(image, scales=options["scales"])
        prototypes.set_image("stroke", [m["features"] for m in maps], gt, verified, class_names)

    up = timed(update, 20)
    plain = timed(lambda: model.segment(image, classes, background=background, **options), 20)
    learned = timed(lambda: model.segment(image, classes, background=background,
                                          learned=LearnedTerm(prototypes, 0.5), **options), 20)
    ms = lambda t: f"{1000 * statistics.median(t):.0f} ms (min {1000 * min(t):.0f})"  # noqa: E731
    return (f"{image.shape[1]}x{image.shape[0]} image, {len(class_names)} classes, scale {options['scales'][0]}: "
            f"update after a stroke {ms(up)}; redraw {ms(plain)} text only, {ms(learned)} with the learned term "
            f"(median of 20; the machine's 2 cores were shared with other jobs, so the minimum is the cost)")


# --- the two settings --------------------------------------------------------------------------------
def toy_section(args) -> str:
    path = Path(args.toy_checkpoint) if args.toy_checkpoint else toy_clip.find_checkpoint()
    if path is None or not path.is_file():
        return (f"toy model not built: run `python -m maskclip.toy_clip` (writes {toy_clip.checkpoint_path()}), "
                f"then this benchmark again")
    model = maskclip.load(toy_clip.MODEL_NAME, pretrained=path, device="auto", dense_mode=args.dense_mode)
    scenes = toy_clip.held_out_scenes(args.toy_eval + 80)
    eval_items = [(s.image, s.labels) for s in scenes[:args.toy_eval]]
    pool = [(s.image, s.labels) for s in scenes[args.toy_eval:]]
    classes, background = toy_clip.CLASS_NAMES, list(toy_clip.BACKGROUND_PROMPTS)
    names = classes + ["background"]
    options = {"scales": (toy_clip.IMAGE_SIZE,), "key_smoothing": True, "prompt_denoising": True}
    retrieval = toy_clip.retrieval_accuracy(model, toy_clip.held_out_scenes(500, seed=7))
    out = [f"**toy** ({path.name}, dense mode {args.dense_mode}): {args.toy_eval} held-out scenes, "
           f"{toy_clip.NUM_LABELS} labels; held-out image-text "
           f"retrieval (top-1 of 500 captions, same set of shapes = hit) {retrieval:.3f}", ""]

    variants = [(f"{args.dense_mode} (dense mode)", model),
                ("naive (last-layer tokens)", with_last_block(model, naive_last_block)),
                ("value path only", with_last_block(model, value_path_last_block))]
    rows = []
    for name, m in variants:
        cells = [name]
        for ks, pd in ((False, False), (True, False), (False, True), (True, True)):
            score = miou(m, eval_items, classes, background, len(names), scales=options["scales"],
                         key_smoothing=ks, prompt_denoising=pd)
            cells.append(f"{score:.3f}")
        rows.append(cells)
        print(rows[-1], flush=True)
    out += ["Text only, mIoU:", "", table(["last block", "plain", "KS", "PD", "KS+PD"], rows), ""]

    rows = learning_rows(model, eval_items, pool, classes, background, names, options, args.draws, WEIGHTS)
    out += ["Text + learned term (KS+PD), mIoU by verified images and weight:", "",
            table(["verified images"] + [f"w={w}" for w in WEIGHTS], rows), ""]
    out += ["Every dense mode (its default options; w=0.5; 1 and 5 verified images: mean of "
            f"{args.draws} draws), the learned term as blended now (visual cosines moved to the text scores' "
            "level at each pixel) / as first built (raw visual cosines). Also tried, not kept: mapping the visual "
            "cosines onto the text scores' spread as well (5 verified: 0.296 / 0.343 / 0.239 / 0.253 in the "
            "four modes; it silences the term on CamVid below, 0.002 at w=0.5).", "",
            modes_table(path, eval_items, pool, classes, background, names, options["scales"], args.draws), "",
            "Which visual term (5 verified images, features only):", "",
            classifier_table(model, pool[:5], eval_items, len(names), options["scales"]), ""]
    return "\n".join(out)


def camvid_section(args) -> str:
    if not CAMVID.is_dir():
        return f"CamVid not found at {CAMVID}: skipped"
    info = read_classes_json(CAMVID / "classes.json")
    classes = list(info["classes"])

    def items(split, limit):
        paths = sorted((CAMVID / split / "images").glob("*.jpg"))[:limit]
        return [(read_image(p), read_label_image(CAMVID / split / "labels" / f"{p.stem}.png")) for p in paths]

    torch.manual_seed(0)
    model = maskclip.load("ViT-B-16", pretrained=None, device="auto", dense_mode=args.dense_mode)
    options = {"scales": (args.camvid_scale,), "key_smoothing": True, "prompt_denoising": True}
    if args.timing_only:
        (image, gt), pool = items("val", 1)[0], items("train", 5)
        return stroke_timing(model, image, gt, classes, [], classes, options, teach(model, pool, classes,
                                                                                   options["scales"]))
    eval_items, pool = items("val", args.camvid_eval), items("train", 20)
    start = time.perf_counter()
    rows = learning_rows(model, eval_items, pool, classes, [], classes, options, args.draws, WEIGHTS)
    print(f"camvid table {time.perf_counter() - start:.0f}s", flush=True)
    timing = stroke_timing(model, *eval_items[0], classes, [], classes, options, teach(model, pool[:5], classes,
                                                                                     options["scales"]))
    return "\n".join([
        f"**CamVid** (ViT-B-16, random weights, dense mode {args.dense_mode}): {len(eval_items)} val images at "
        f"short side {args.camvid_scale}, 11 classes, teaching images from train; text + learned term (KS+PD), "
        "mIoU:", "",
        table(["verified images"] + [f"w={w}" for w in WEIGHTS], rows), "",
        "The same, blended as first built (raw visual cosines):", "",
        table(["verified images"] + [f"w={w}" for w in WEIGHTS],
              learning_rows(model, eval_items, pool, classes, [], classes, options, args.draws, WEIGHTS,
                            term=RawBlendTerm)), "",
        "Which visual term (5 verified images, features only):", "",
        classifier_table(model, pool[:5], eval_items, len(classes), options["scales"]), "", timing])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", nargs="+", default=["toy", "camvid"], choices=("toy", "camvid"))
    ap.add_argument("--dense-mode", default="maskclip", help="any of backbone.DENSE_MODES")
    ap.add_argument("--toy-checkpoint", help="default: the cached build of maskclip.toy_clip")
    ap.add_argument("--toy-eval", type=int, default=200, help="held-out scenes scored")
    ap.add_argument("--camvid-eval", type=int, default=30, help="CamVid val images scored")
    ap.add_argument("--camvid-scale", type=int, default=336)
    ap.add_argument("--draws", type=int, default=3, help="random draws averaged for 1 and 5 verified images")
    ap.add_argument("--timing-only", action="store_true", help="camvid: only the stroke update and redraw times")
    ap.add_argument("--write", action="store_true", help="write the section of bench/results.md")
    args = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    for name in args.dataset:
        start = time.perf_counter()
        body = "\n".join([machine_line(), "", toy_section(args) if name == "toy" else camvid_section(args)])
        print(f"{name}: {time.perf_counter() - start:.0f}s\n{body}", flush=True)
        if args.write and not args.timing_only:
            write_section(HEADINGS[name], body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
