"""`maskclip refine --min-confidence`: which default, measured on the toy CLIP.

Refine merges the student's labels into the project; a pixel whose student confidence (softmax maximum) is
below --min-confidence becomes unlabelled (255) instead (`Project.merge_prediction`; verified pixels never
change). An unlabelled pixel is one the annotator still has to label, so in the mIoU below it counts as a miss
of its ground-truth class (`maskclip.metrics`: column K), never as a false positive of another class.

Setup as bench/bench_toy_student_vs_teacher.py: the MaskCLIP teacher (KS + PD at 0.5) on the toy CLIP
(../shared/models, `MASKCLIP_TOY_CLIP_DIR`) pseudo-labels --train-scenes scenes (`fill_teacher_cache`, what
`maskclip train` runs); the default CPU student (`clip`) trains on them (`maskclip.train.train`, guided only,
its default on the CPU); the refined labels of --eval held-out scenes (none verified: they are the student's
prediction with the threshold rule of `merge_prediction`) are scored at each threshold. The teacher's labels
under the same rule are shown for comparison (what `project segment --min-confidence` would give).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_refine_confidence.py [--write]
"""
from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import machine_line, write_section  # noqa: E402

import maskclip  # noqa: E402
from maskclip import toy_clip  # noqa: E402
from maskclip.defaults import REFINE_MIN_CONFIDENCE, UNLABELLED  # noqa: E402
from maskclip.metrics import confusion_matrix, scores_from_confusion  # noqa: E402
from maskclip.text import prompt_rows  # noqa: E402
from maskclip.train import AugmentConfig, TeacherCache, TrainConfig, TrainItem, train  # noqa: E402
from maskclip.train.inference import predict  # noqa: E402
from maskclip.train.targets import fill_teacher_cache  # noqa: E402

HEADING = "## refine --min-confidence on the toy CLIP (bench/bench_refine_confidence.py)"
TRAIN_SEED = 20_261_202  # as bench_toy_student_vs_teacher: the training scenes' own stream


def _pixels(image: np.ndarray) -> np.ndarray:
    return image


def thresholded(labels: np.ndarray, confidence: np.ndarray, threshold: float) -> np.ndarray:
    """merge_prediction's rule on an image without verified pixels: below the threshold -> unlabelled."""
    return np.where(confidence >= threshold, labels, UNLABELLED)


def scores(cms: np.ndarray, names: list[str]) -> dict:
    s = scores_from_confusion(cms, names)
    k = len(names)
    labelled = cms[:, :k].sum()
    s["coverage"] = float(labelled / cms.sum())
    s["labelled_accuracy"] = float(np.trace(cms[:, :k]) / max(1, labelled))
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy-checkpoint", help="default: the shared / cached build of maskclip.toy_clip")
    ap.add_argument("--train-scenes", type=int, default=300)
    ap.add_argument("--eval", type=int, default=200, help="held-out scenes scored")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (one student each)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.7])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="write the numbers into bench/results.md")
    args = ap.parse_args()

    path = Path(args.toy_checkpoint) if args.toy_checkpoint else toy_clip.find_checkpoint()
    if path is None or not path.is_file():
        print("no toy CLIP checkpoint: set MASKCLIP_TOY_CLIP_DIR=../shared/models or build it with "
              "`python -m maskclip.toy_clip`", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    wall0 = time.perf_counter()
    device = torch.device("cpu")
    model = maskclip.load(toy_clip.MODEL_NAME, pretrained=path, device=device, dense_mode="maskclip")
    classes, background = list(toy_clip.CLASS_NAMES), list(toy_clip.BACKGROUND_PROMPTS)
    rows, groups, names, _ = prompt_rows(classes, background)
    k = len(names)
    segment_kwargs = {"background": background, "scales": [toy_clip.IMAGE_SIZE], "key_smoothing": True,
                      "prompt_denoising": True, "pd_threshold": 0.5}
    embeddings = model.encode_text(rows).detach().cpu()
    eval_scenes = toy_clip.held_out_scenes(args.eval)
    train_scenes = toy_clip.held_out_scenes(args.train_scenes, seed=TRAIN_SEED)

    cms = {("teacher", t): np.zeros((k, k + 1), np.int64) for t in args.thresholds}
    for s in eval_scenes:  # the teacher's labels under the same rule (`project segment --min-confidence`)
        seg = model.segment(s.image, classes, **segment_kwargs)
        for t in args.thresholds:
            cms["teacher", t] += confusion_matrix(s.labels, thresholded(seg.labels, seg.probs.max(axis=0), t), k)
    per_seed, train_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = TeacherCache(root / "teacher", {"toy": str(path), "seed": TRAIN_SEED}).open()
        items = [TrainItem(f"scene-{i:05d}", functools.partial(_pixels, s.image)) for i, s in enumerate(train_scenes)]
        fill_teacher_cache(cache, items, model, classes, segment_kwargs, names)
        for seed in args.seeds:
            config = TrainConfig(iters=args.iters, batch_size=args.batch_size, student="clip", imagenet_backbone=False,
                                 seed=seed, checkpoint_every=args.iters, log_every=max(1, args.iters // 5),
                                 augment=AugmentConfig(base_size=toy_clip.IMAGE_SIZE, crop_size=toy_clip.IMAGE_SIZE))
            result = train(items, cache, embeddings, names, root / f"run{seed}", config, clip_model=model,
                           log=lambda m: print(m, file=sys.stderr, flush=True))
            student = result.student.eval()
            train_s.append(result.seconds)
            seed_cms = {t: np.zeros((k, k + 1), np.int64) for t in args.thresholds}
            for s in eval_scenes:
                labels, conf = predict(student, s.image, toy_clip.IMAGE_SIZE, device)
                for t in args.thresholds:
                    seed_cms[t] += confusion_matrix(s.labels, thresholded(labels, conf, t), k)
            per_seed.append({t: scores(cm, names) for t, cm in seed_cms.items()})
            print(f"seed {seed}: " + ", ".join(f"{t:g}: {100 * per_seed[-1][t]['mIoU']:.1f}" for t in args.thresholds),
                  file=sys.stderr, flush=True)
    teacher = {t: scores(cms["teacher", t], names) for t in args.thresholds}
    mean = {t: {key: float(np.mean([r[t][key] for r in per_seed])) for key in ("mIoU", "coverage", "labelled_accuracy")}
            for t in args.thresholds}
    best = max(args.thresholds, key=lambda t: (round(mean[t]["mIoU"], 4), -t))

    def pct(v):
        return f"{100 * v:.1f}"

    table = ["| labels | --min-confidence | mIoU | per seed | labelled pixels | accuracy of labelled pixels |",
             "|---|---|---|---|---|---|"]
    for t in args.thresholds:
        mark = "**" if t == best else ""
        seeds = " / ".join(pct(r[t]["mIoU"]) for r in per_seed)
        table.append(f"| refined (clip student, mean of {len(per_seed)} seeds) | {t:g} | "
                     f"{mark}{pct(mean[t]['mIoU'])}{mark} | {seeds} | {pct(mean[t]['coverage'])}% | "
                     f"{pct(mean[t]['labelled_accuracy'])}% |")
    for t in args.thresholds:
        r = teacher[t]
        table.append(f"| MaskCLIP teacher | {t:g} | {pct(r['mIoU'])} | - | {pct(r['coverage'])}% | "
                     f"{pct(r['labelled_accuracy'])}% |")
    wall = time.perf_counter() - wall0
    body = f"""{machine_line()}; {args.threads} torch thread, CPU; the 2 cores shared with other jobs.

Teacher: MaskCLIP (KS + PD at 0.5) on the toy CLIP `{path.name}`; student: `clip` (the CPU default, guided only),
{args.iters} iterations at batch {args.batch_size}, training seeds {args.seeds}, trained on the teacher's labels of
{args.train_scenes} scenes ({np.mean(train_s):.0f} s per seed). Scored on {args.eval} held-out scenes; a pixel below
the threshold is unlabelled and counts as a miss.

{chr(10).join(table)}

Highest mean refined mIoU at --min-confidence {best:g}; `maskclip refine`'s default
(maskclip.defaults.REFINE_MIN_CONFIDENCE) is {REFINE_MIN_CONFIDENCE:g}. Whole run {wall / 60:.1f} min.
"""
    print(body)
    if args.write:
        write_section(HEADING, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
