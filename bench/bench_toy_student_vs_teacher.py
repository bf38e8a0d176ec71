"""MaskCLIP+ on the toy CLIP: a student trained on its real MaskCLIP teacher's labels, with self-training.

bench/bench_student_vs_teacher.py measures the MaskCLIP+ claim on CamVid with a simulated teacher, because
random CLIP weights make real MaskCLIP useless. Here the teacher is real: MaskCLIP (dense mode maskclip,
key smoothing + prompt denoising on, the annotator's defaults) on the contrastively trained toy CLIP
(`maskclip.toy_clip`, `python -m maskclip.toy_clip` builds it), on 64x64 synthetic scenes of coloured shapes
(12 "colour shape" classes + background).

1. Teacher: `maskclip.train.targets.fill_teacher_cache` (what `maskclip train` runs) writes MaskCLIP's pseudo
   labels of --train-scenes scenes (their own random stream, --train-seed) into a `TeacherCache`.
2. Student: `maskclip.train.train`, the regular MaskCLIP+ loop, with the default CPU student (LR-ASPP
   MobileNetV3-Large, random init: ImageNet weights cannot be downloaded here) whose frozen classifier is the
   toy CLIP's own text embeddings of the class prompts (85 templates, as `maskclip train` builds them). One
   run per --guided-fraction: 1.0 = MaskCLIP-guided only, 0.1 = the paper's schedule (guided for the first
   tenth, then self-training on the student's own arg-max), 0.5 = a later switch for a student that starts
   from random weights. The runs share their guided phase (a guided run stops at each switch; a copy of its
   run folder resumes with self-training), which `train`'s bit-exact resume makes equal to separate runs.
3. Teacher and each student are scored on the same held-out scenes (`toy_clip.held_out_scenes`) against the
   ground truth with `maskclip.metrics`.

Image size: the scenes are 64x64 and MaskCLIP sees them at 64 (its pre-training size, an 8x8 patch grid).
The student classifies at 1/8 (LR-ASPP's output stride): 8x8 at --base-size 64, 16x16 at 128. Upsampling to
128 costs 4x per image. Measured while writing this benchmark (guided only, teacher 29.6 mIoU, the 2 cores
shared with other jobs): 4000 iterations at 64 (12 min) gave the student 22.7 mIoU, 1500 iterations at 128
(9 min) gave 14.0. A student from random weights is limited by iterations here, not by resolution, so the
default is 64 (crops of 64 from scenes scaled by U(0.5, 2)).

    .venv/bin/python bench/bench_toy_student_vs_teacher.py [--toy-checkpoint PATH] [--write]

--compare scores students x training seeds along one schedule (`--parallel-seeds`: one process per seed).
`--teacher-mode sclip` makes SCLIP the teacher (and the clip student's dense path), `--baseline-modes` scores
the other dense modes training-free beside it, and `--confidence-keep`, `--ema-decay`,
`--self-train-keep-teacher`, `--self-train-balance` pass the TrainConfig options of the same names. The
measured best (bench/results.md, "... SCLIP teacher, class-balanced confident pixels, mean teacher"):

    ... --compare --teacher-mode sclip --baseline-modes maskclip clearclip naclip --students clip \
        --train-scenes 300 --iters 300 --eval-at 100 150 200 --clip-batch-size 16 --confidence-keep 0.2 \
        --ema-decay 0.99 --seeds 0 1 2 --parallel-seeds --threads 1
"""
from __future__ import annotations

import argparse
import functools
import json
import shutil
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
from maskclip.dense_modes import DENSE_MODE_LABELS, DENSE_MODE_NAMES  # noqa: E402
from maskclip.metrics import confusion_matrix, scores_from_confusion  # noqa: E402
from maskclip.text import prompt_rows  # noqa: E402
from maskclip.train import AugmentConfig, TeacherCache, TrainConfig, TrainItem, train  # noqa: E402
from maskclip.train.inference import predict  # noqa: E402
from maskclip.train.targets import fill_teacher_cache  # noqa: E402

HEADING = "## MaskCLIP+ student vs its MaskCLIP teacher on the toy CLIP (bench/bench_toy_student_vs_teacher.py)"
COMPARE_HEADING = ("## CLIP-initialised vs random-init MaskCLIP+ students on the toy CLIP, seeds and schedule "
                   "(bench/bench_toy_student_vs_teacher.py --compare)")
TRAIN_SEED = 20_261_202  # the student's training scenes: neither the toy CLIP's stream (0) nor the held-out one


def _pixels(image: np.ndarray) -> np.ndarray:
    return image


def score(cm: np.ndarray, names: list[str]) -> dict:
    return scores_from_confusion(cm, names)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def phase_text(fraction: float) -> str:
    if fraction >= 1.0:
        return "guided only"
    return f"guided {100 * fraction:.0f}%, then self-training"


def reading(teacher: dict, cm_teacher: np.ndarray, runs: list[dict], names: list[str]) -> str:
    """What the numbers show, stated from the numbers (nothing here is fixed in advance)."""
    iou = lambda scores, c: scores["per_class_iou"][c] or 0.0  # noqa: E731
    objects = names[:-1]
    missed = [c for c in objects if iou(teacher, c) < 0.05]
    rows = [names.index(c) for c in missed]
    as_background = cm_teacher[rows, len(names) - 1].sum() / max(1, cm_teacher[rows].sum())
    found = [c for c in objects if c not in missed]
    lines = [f"**Reading.** The teacher finds {len(found)} of the {len(objects)} shape classes (IoU >= 5%: "
             f"{', '.join(found) or 'none'}); the pixels of the others ({', '.join(missed) or 'none'}) it labels "
             f"{100 * as_background:.0f}% background, so a student trained on its labels has little to learn them "
             "from."]
    for r in runs:
        ok = [c for c in found if iou(r["scores"], c) >= 0.05]
        better = [c for c in found if iou(r["scores"], c) > iou(teacher, c)]
        delta = 100 * (r["scores"]["mIoU"] - teacher["mIoU"])
        lines.append(f"- {phase_text(r['guided_fraction'])}: {delta:+.1f} mIoU vs the teacher; of the teacher's "
                     f"{len(found)} classes it keeps {len(ok)} (IoU >= 5%) and beats the teacher on {len(better)}"
                     f"{' (' + ', '.join(better) + ')' if better else ''}; final loss {r['final_loss']:.3f}.")
    guided = next((r for r in runs if r["guided_fraction"] >= 1.0), None)
    for r in runs:
        if guided is None or r is guided:
            continue
        lost = [c for c in found if iou(guided["scores"], c) >= 0.05 and iou(r["scores"], c) < 0.05]
        verdict = "hurts" if r["scores"]["mIoU"] < guided["scores"]["mIoU"] else "helps"
        lines.append(f"- self-training from iteration {r['switch']} {verdict} "
                     f"({100 * (r['scores']['mIoU'] - guided['scores']['mIoU']):+.1f} mIoU vs guided only)"
                     + (f" and loses {', '.join(lost)}" if lost else "") + ".")
    if guided is None or all(r["scores"]["mIoU"] >= guided["scores"]["mIoU"] for r in runs):
        return "\n".join(lines)
    lines.append("")
    lines.append("Why self-training can hurt here: its targets are the student's own arg-max of the same forward "
                 "pass (as in the official code), so every pixel already agrees with its target and the loss "
                 "(see the final losses) only sharpens what the student predicts; classes it predicts weakly at "
                 "the switch are absorbed by their neighbours (same colour, other shape) or by background. The "
                 "paper switches after 1/10 of the schedule because an ImageNet-initialised student has saturated "
                 "on MaskCLIP's labels by then; this one starts from random weights (no downloads here) and is "
                 "still learning from the teacher at the switch. Caveats: one seed, a short CPU schedule "
                 "(a longer one raises the guided student), 64x64 synthetic scenes, a toy CLIP whose MaskCLIP "
                 "labels miss whole colours; the ranking of the schedules, not the absolute numbers, is the result.")
    return "\n".join(lines)


def in_parallel(jobs: list) -> list:
    """Run each job (a function returning a list) in its own forked process, one torch thread each; the
    concatenated results in job order. Each seed's training is then timed on one core, as when run alone."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")  # the jobs are closures over the loaded model and data: fork, not spawn
    queue = ctx.Queue()

    def work(i, job):
        torch.set_num_threads(1)
        try:
            queue.put((i, job(), None))
        except BaseException as exc:  # reported by the parent, which then fails
            queue.put((i, None, f"{type(exc).__name__}: {exc}"))

    procs = [ctx.Process(target=work, args=(i, job)) for i, job in enumerate(jobs)]
    for p in procs:
        p.start()
    results = {}
    for _ in procs:
        i, out, error = queue.get()
        if error:
            raise RuntimeError(f"parallel job {i} failed: {error}")
        results[i] = out
    for p in procs:
        p.join()
    return [r for i in range(len(jobs)) for r in results[i]]


def teacher_kwargs(mode: str, background: list[str]) -> dict:
    """`segment` options of a dense mode as a teacher: the annotator's defaults for that mode (maskclip: key
    smoothing + prompt denoising at 0.5; SCLIP, ClearCLIP, NACLIP: neither, as their papers), at the toy
    CLIP's pre-training size (an 8x8 patch grid)."""
    kwargs = {"background": background, "scales": [toy_clip.IMAGE_SIZE]}
    if mode == "maskclip":
        kwargs.update(key_smoothing=True, prompt_denoising=True, pd_threshold=0.5)
    return kwargs


def mode_text(mode: str) -> str:
    return "MaskCLIP (KS+PD)" if mode == "maskclip" else DENSE_MODE_LABELS[mode]


def compare(args, path: Path, model, classes, segment_kwargs, embeddings, names, teacher, cm_teacher, eval_scenes,
            items, cache, root: Path, pseudo, pseudo_s: float, teacher_eval_s: float, wall0: float,
            others: dict | None = None) -> int:
    """--compare: each student x training seed, scored on the held-out scenes at every --eval-at iteration
    of one --iters schedule (a run stops at each point, is scored, and resumes: bit-exact on the CPU), plus
    self-training branches (--self-train-fractions) of the first seed of each student."""
    device = torch.device(args.device)
    k = len(names)

    def evaluate(student) -> dict:
        student = student.eval().to(device)
        cm = np.zeros((k, k + 1), np.int64)
        for s in eval_scenes:
            cm += confusion_matrix(s.labels, predict(student, s.image, args.base_size, device)[0], k)
        return score(cm, names)

    def config(student: str, seed: int, fraction: float) -> TrainConfig:
        clip = student == "clip"
        mean_teacher = {"ema_decay": args.ema_decay, "self_train_keep_teacher": args.self_train_keep_teacher,
                        "self_train_balance": args.self_train_balance} if clip else {}
        return TrainConfig(iters=args.iters, batch_size=args.clip_batch_size if clip else args.batch_size,
                           student=student, imagenet_backbone=False, lr=args.clip_lr if clip else args.lr,
                           guided_fraction=fraction, seed=seed, freeze_blocks=args.freeze_blocks if clip else 0,
                           confidence_keep=args.confidence_keep, **mean_teacher,
                           checkpoint_every=args.iters, log_every=max(args.iters // 10, 1),
                           augment=AugmentConfig(base_size=args.base_size, crop_size=args.crop_size))

    def run(student: str, seed: int, fraction: float, folder: Path, points: list[int], resume: bool,
            branch_at: dict | None = None, seconds: float = 0.0, cpu: float = 0.0) -> list[dict]:
        out = []
        for point in points:
            cpu0 = time.process_time()  # this process's CPU time: the budget is CPU-minutes on a shared machine
            result = train(items, cache, embeddings, names, folder, config(student, seed, fraction), resume=resume,
                           stop=(lambda it, p=point: it >= p) if point < args.iters else None, log=say,
                           clip_model=model)
            seconds += result.seconds
            cpu += time.process_time() - cpu0
            resume = True
            if branch_at and point in branch_at:  # the guided run's checkpoint at a switch: a branch resumes it
                shutil.copytree(folder, branch_at[point][0])
                branch_at[point][1:] = [seconds, cpu]
            sc = evaluate(result.student)
            out.append({"student": student, "seed": seed, "guided_fraction": fraction, "iteration": result.iteration,
                        "mIoU": sc["mIoU"], "per_class_iou": sc["per_class_iou"], "train_s": seconds,
                        "train_cpu_s": cpu, "loss": result.loss})
            say(f"{student} seed {seed} ({phase_text(fraction)}) @ {result.iteration}: mIoU {sc['mIoU']:.3f} "
                f"(teacher {teacher['mIoU']:.3f}), train {seconds:.0f}s")
        return out

    records = []
    switches = {f: round(f * args.iters) for f in args.self_train_fractions}
    points = sorted({p for p in args.eval_at if p < args.iters} | {args.iters} | set(switches.values()))

    def one_seed(student: str, seed: int) -> list[dict]:
        folder = root / f"{student}-seed{seed}"
        branch_at = ({s: [root / f"{student}-seed{seed}-self-from-{s}", 0.0, 0.0] for s in switches.values()}
                     if seed == args.seeds[0] else None)
        out = run(student, seed, 1.0, folder, points, False, branch_at)
        for fraction, switch in (switches.items() if branch_at else ()):  # self-training branches, first seed
            branch, trunk_s, trunk_cpu = branch_at[switch]
            out += run(student, seed, fraction, branch, [p for p in points if p > switch], True, seconds=trunk_s,
                       cpu=trunk_cpu)
        return out

    for student in args.students:
        if args.parallel_seeds and len(args.seeds) > 1:
            records += in_parallel([functools.partial(one_seed, student, seed) for seed in args.seeds])
        else:
            for seed in args.seeds:
                records += one_seed(student, seed)
    wall = time.perf_counter() - wall0

    def pct(v):
        return f"{100 * (v or 0):.1f}"

    def stats(rs):
        v = np.array([r["mIoU"] for r in rs])
        return v.mean(), (v.std(ddof=1) if len(v) > 1 else 0.0), v.min(), v.max()

    lines = ["| student | schedule | iteration | seeds | mIoU mean | spread (sd; min-max) | vs teacher | train time / seed (wall; CPU) |",
             "|---|---|---|---|---|---|---|---|",
             f"| teacher: {mode_text(args.teacher_mode)}, training-free | - | - | - | {pct(teacher['mIoU'])} | - | - | "
             f"{1000 * teacher_eval_s / len(eval_scenes):.0f} ms/scene |"]
    lines += [f"| (not the teacher) {mode_text(m)}, training-free | - | - | - | {pct(sc['mIoU'])} | - | "
              f"{100 * (sc['mIoU'] - teacher['mIoU']):+.1f} | - |" for m, sc in (others or {}).items()]
    summary = []
    for student in args.students:
        for fraction in [1.0, *args.self_train_fractions]:
            for point in points:
                rs = [r for r in records if r["student"] == student and r["guided_fraction"] == fraction
                      and r["iteration"] == point]
                if not rs:
                    continue
                mean, sd, lo, hi = stats(rs)
                secs = np.mean([r["train_s"] for r in rs])
                cpu_s = np.mean([r["train_cpu_s"] for r in rs])
                summary.append({"student": student, "guided_fraction": fraction, "iteration": point,
                                "seeds": [r["seed"] for r in rs], "mIoU": [r["mIoU"] for r in rs],
                                "mean": mean, "sd": sd, "train_s": secs, "train_cpu_s": cpu_s})
                lines.append(f"| {student} | {phase_text(fraction)} | {point} | {len(rs)} | **{pct(mean)}** | "
                             f"{pct(sd)}; {pct(lo)}-{pct(hi)} | {100 * (mean - teacher['mIoU']):+.1f} | "
                             f"{secs:.0f} s; {cpu_s:.0f} CPU-s |")
    best = max(summary, key=lambda r: r["mean"])
    best_runs = [r for r in records if r["student"] == best["student"] and r["guided_fraction"] == best["guided_fraction"]
                 and r["iteration"] == best["iteration"]]
    per_class = [f"| class | teacher IoU | best student ({best['student']}, {phase_text(best['guided_fraction'])}, "
                 f"{best['iteration']} it., mean of {len(best_runs)} seeds) |", "|---|---|---|"]
    for c in names:
        per_class.append(f"| {c} | {pct(teacher['per_class_iou'][c])} | "
                         f"{pct(np.mean([r['per_class_iou'][c] or 0 for r in best_runs]))} |")
    print(json.dumps({"teacher_mIoU": teacher["mIoU"], "pseudo_label_mIoU_train": pseudo["mIoU"],
                      "summary": summary, "wall_s": wall, "config": vars(args)}, indent=1))
    extras = []
    if args.confidence_keep is not None:
        extras.append(f"trained only on the teacher's most confident {100 * args.confidence_keep:.0f}% of each "
                      "class's pixels (class-balanced bars, the rest ignored)")
    if args.ema_decay is not None:
        extras.append(f"mean teacher: EMA of the weights (decay {args.ema_decay}) labels self-training and is "
                      "the scored student")
    if args.self_train_keep_teacher:
        extras.append("self-training keeps the teacher's confident pixels")
    if args.self_train_balance is not None:
        extras.append(f"class-balanced self-training (CBST, share {args.self_train_balance})")
    described = {
        "clip": f"""- `clip`: a trainable copy of the toy CLIP's image tower through {mode_text(args.teacher_mode).split(" (")[0]}'s dense path + zero-initialised
  residual decoder at 2x the patch grid, classifier = the frozen text embeddings; AdamW lr {args.clip_lr}
  (weight decay 0.01), batch {args.clip_batch_size}, {"end to end" if not args.freeze_blocks else f"first {args.freeze_blocks} blocks frozen"}{"; " + "; ".join(extras) if extras else ""}.""",
        "lraspp_mobilenet_v3_large": f"""- `lraspp_mobilenet_v3_large`: random initialisation (no ImageNet weights offline), SGD lr {args.lr} poly,
  batch {args.batch_size}."""}
    students_text = "\n".join(described.get(s, f"- `{s}`: random initialisation, SGD lr {args.lr} poly, batch "
                                             f"{args.batch_size}.") for s in args.students)
    pseudo_text = f"{pseudo_s:.0f} s" if pseudo_s >= 1 else "read from the run folder's cache of an earlier run"
    body = f"""{machine_line()}; {args.threads} torch threads, device {args.device}; the 2 cores shared with other jobs.

Teacher: {mode_text(args.teacher_mode)} ({", ".join(f"{k} {v}" for k, v in segment_kwargs.items() if k != "background")}) on the toy CLIP `{path.name}`; its pseudo labels of
{len(items)} training scenes (seed {args.train_seed}) score {pct(pseudo['mIoU'])} mIoU against their ground truth
({pseudo_text}). Scored on {len(eval_scenes)} held-out scenes.
Students (`maskclip.train.train`, flips + colour jitter, crops {args.crop_size} from scenes scaled to
{args.base_size} x U(0.5, 2)), one {args.iters}-iteration poly schedule each, scored at iterations {points}
of that schedule (a run stops, is scored and resumes; the learning rate at iteration {points[0]} is that of the
{args.iters}-iteration schedule, not of a {points[0]}-iteration one):
{students_text}
Training seeds {args.seeds} (batch order, augmentation, decoder init); self-training branches
({", ".join(phase_text(f) for f in args.self_train_fractions) or "none"}) on seed {args.seeds[0]} only.

{chr(10).join(lines)}

{chr(10).join(per_class)}

Whole comparison: {wall / 60:.1f} min wall time.
"""
    print(body)
    if args.write:
        write_section(COMPARE_HEADING + (f", {args.section_note}" if args.section_note else ""), body)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy-checkpoint", help="default: the cached build of maskclip.toy_clip (find_checkpoint)")
    ap.add_argument("--train-scenes", type=int, default=600)
    ap.add_argument("--train-seed", type=int, default=TRAIN_SEED)
    ap.add_argument("--eval", type=int, default=200, help="held-out scenes scored")
    ap.add_argument("--guided-fractions", type=float, nargs="+", default=[1.0, 0.5, 0.1],
                    help="one training run each: 1.0 = no self-training, 0.1 = the paper's switch")
    ap.add_argument("--confidence-threshold", type=float, default=None,
                    help="teacher pixels less confident than this are ignored (MaskCLIP+'s optional threshold)")
    ap.add_argument("--self-train-threshold", type=float, default=None,
                    help="self-training ignores student pixels less confident than this")
    ap.add_argument("--iters", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--base-size", type=int, default=64, help="short side at scale 1 (the scenes are 64x64)")
    ap.add_argument("--crop-size", type=int, default=64)
    ap.add_argument("--student", default="lraspp_mobilenet_v3_large")
    ap.add_argument("--lr", type=float, default=0.05,
                    help="0.05: the paper's 0.01 is for ImageNet-initialised backbones; this one starts from random")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--run-dir", default=None, help="keep the run folders here (default: a temporary folder)")
    ap.add_argument("--write", action="store_true", help="write the numbers into bench/results.md")
    ap.add_argument("--compare", action="store_true",
                    help="students x training seeds, scored along one schedule (see compare())")
    ap.add_argument("--students", nargs="+", default=["clip", "lraspp_mobilenet_v3_large"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--eval-at", type=int, nargs="+", default=[250, 500])
    ap.add_argument("--self-train-fractions", type=float, nargs="*", default=[0.5])
    ap.add_argument("--clip-lr", type=float, default=1e-4)
    ap.add_argument("--clip-batch-size", type=int, default=32)
    ap.add_argument("--freeze-blocks", type=int, default=0)
    ap.add_argument("--teacher-mode", default="maskclip", choices=DENSE_MODE_NAMES,
                    help="the teacher's dense mode (its own defaults; maskclip: KS + PD) and the clip student's tower")
    ap.add_argument("--baseline-modes", nargs="*", default=[], choices=DENSE_MODE_NAMES,
                    help="--compare: also score these dense modes training-free (the teacher's mode always)")
    ap.add_argument("--confidence-keep", type=float, default=None,
                    help="per class, train on the teacher's most confident share of its pixels (TrainConfig)")
    ap.add_argument("--ema-decay", type=float, default=None, help="clip student: mean teacher (TrainConfig)")
    ap.add_argument("--self-train-keep-teacher", action="store_true",
                    help="clip student: self-training keeps the teacher's (confident) pixels")
    ap.add_argument("--self-train-balance", type=float, default=None,
                    help="clip student: class-balanced self-training share (TrainConfig)")
    ap.add_argument("--parallel-seeds", action="store_true",
                    help="--compare: train the seeds at once, one process (and torch thread) each")
    ap.add_argument("--section-note", default="", help="--compare: appended to the results.md heading (one section "
                    "per note, so runs with other settings keep their own)")
    args = ap.parse_args()

    path = Path(args.toy_checkpoint) if args.toy_checkpoint else toy_clip.find_checkpoint()
    if path is None or not path.is_file():
        where = path if path is not None else toy_clip.checkpoint_path()
        print(f"no toy CLIP checkpoint at {where}: build it with `python -m maskclip.toy_clip` "
              "(or pass --toy-checkpoint PATH), then run this benchmark again", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    wall0 = time.perf_counter()
    device = torch.device(args.device)
    model = maskclip.load(toy_clip.MODEL_NAME, pretrained=path, device=device, dense_mode=args.teacher_mode)
    classes, background = list(toy_clip.CLASS_NAMES), list(toy_clip.BACKGROUND_PROMPTS)
    rows, groups, names, bg_index = prompt_rows(classes, background)
    assert names == classes + ["background"] and bg_index == toy_clip.BACKGROUND_LABEL
    k = len(names)
    segment_kwargs = teacher_kwargs(args.teacher_mode, background)
    embeddings = model.encode_text(rows).detach().cpu()  # the student's frozen classifier, as `maskclip train`

    eval_scenes = toy_clip.held_out_scenes(args.eval)
    t0 = time.perf_counter()
    cm_teacher = np.zeros((k, k + 1), np.int64)
    for s in eval_scenes:
        cm_teacher += confusion_matrix(s.labels, model.segment(s.image, classes, **segment_kwargs).labels, k)
    teacher_eval_s = time.perf_counter() - t0
    teacher = score(cm_teacher, names)
    print(f"teacher on {len(eval_scenes)} held-out scenes: mIoU {teacher['mIoU']:.3f} ({teacher_eval_s:.0f}s)",
          file=sys.stderr, flush=True)

    train_scenes = toy_clip.held_out_scenes(args.train_scenes, seed=args.train_seed)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.run_dir or tmp)
        cache = TeacherCache(root / "teacher", {"toy_checkpoint": str(path.resolve()), "mode": args.teacher_mode,
                                                "mtime": path.stat().st_mtime_ns, "seed": args.train_seed,
                                                "segment": segment_kwargs}).open()
        items = [TrainItem(f"scene-{i:05d}", functools.partial(_pixels, s.image)) for i, s in enumerate(train_scenes)]
        t0 = time.perf_counter()
        computed = fill_teacher_cache(cache, items, model, classes, segment_kwargs, names)
        pseudo_s = time.perf_counter() - t0
        cm_pseudo = np.zeros((k, k + 1), np.int64)
        for item, s in zip(items, train_scenes):
            cm_pseudo += confusion_matrix(s.labels, cache.get(item.key)[0], k)
        pseudo = score(cm_pseudo, names)
        print(f"pseudo labels of {len(items)} training scenes ({computed} computed, {pseudo_s:.0f}s): "
              f"mIoU vs their ground truth {pseudo['mIoU']:.3f}", file=sys.stderr, flush=True)

        if args.compare:
            others = {}  # the other dense modes as training-free baselines, each with its own defaults
            for mode in args.baseline_modes:
                if mode != args.teacher_mode:
                    cm = np.zeros((k, k + 1), np.int64)
                    for s in eval_scenes:
                        cm += confusion_matrix(s.labels, model.segment(s.image, classes, dense_mode=mode,
                                                                       **teacher_kwargs(mode, background)).labels, k)
                    others[mode] = score(cm, names)
                    say(f"training-free {mode}: mIoU {others[mode]['mIoU']:.3f}")
            return compare(args, path, model, classes, segment_kwargs, embeddings, names, teacher, cm_teacher,
                           eval_scenes, items, cache, root, pseudo, pseudo_s, teacher_eval_s, wall0, others)

        def config_for(fraction: float) -> TrainConfig:
            return TrainConfig(iters=args.iters, batch_size=args.batch_size, student=args.student,
                               imagenet_backbone=False, lr=args.lr, guided_fraction=fraction,
                               confidence_threshold=args.confidence_threshold,
                               self_train_threshold=args.self_train_threshold,
                               checkpoint_every=args.iters, log_every=max(args.iters // 20, 1),
                               augment=AugmentConfig(base_size=args.base_size, crop_size=args.crop_size))

        def evaluate(student) -> tuple[dict, float]:
            student = student.eval().to(device)
            cm = np.zeros((k, k + 1), np.int64)
            t0 = time.perf_counter()
            for s in eval_scenes:
                cm += confusion_matrix(s.labels, predict(student, s.image, args.base_size, device)[0], k)
            return score(cm, names), time.perf_counter() - t0

        # Every run is guided up to its switch, so they share that phase: one guided "trunk" run stops at each
        # switch (a checkpoint), a copy of its folder resumes from there with self-training, and the trunk
        # resumes guided. Resuming is bit-exact on the CPU (maskclip.train.loop), so each run equals a run
        # from scratch with its own --guided-fraction, and each gets the same student at its switch.
        switches = {}
        for f in sorted(set(args.guided_fractions), reverse=True):  # one run per distinct switch iteration
            switches.setdefault(config_for(f).switch_iteration, f)
        switches = {f: switch for switch, f in switches.items()}
        fractions = list(switches)
        trunk_dir, trunk_s, done = root / "guided", 0.0, 0
        for fraction in sorted(fractions, key=lambda f: switches[f]):
            switch = switches[fraction]
            if switch > done:  # continue the guided trunk up to this switch
                result = train(items, cache, embeddings, names, trunk_dir, config_for(1.0), resume=done > 0,
                               stop=(lambda it, s=switch: it >= s) if switch < args.iters else None, log=say)
                trunk_s += result.seconds
                done = result.iteration
                if result.state == "done":
                    trunk_student, trunk_loss = result.student, result.loss
            if switch >= args.iters:  # guided only: the trunk's own end
                student, seconds, ips = trunk_student, trunk_s, args.iters * args.batch_size / trunk_s
                loss = trunk_loss
            else:
                branch = root / f"self-training-from-{switch}"
                if done:
                    shutil.copytree(trunk_dir, branch)
                result = train(items, cache, embeddings, names, branch, config_for(fraction), resume=done > 0, log=say)
                student, seconds, loss = result.student, trunk_s + result.seconds, result.loss
                ips = args.iters * args.batch_size / seconds
            scores, predict_s = evaluate(student)
            runs.append({"guided_fraction": fraction, "switch": switch, "scores": scores, "train_s": seconds,
                         "images_per_s": ips, "predict_s": predict_s, "final_loss": loss})
            say(f"student ({phase_text(fraction)}): mIoU {scores['mIoU']:.3f}, train {seconds:.0f}s "
                f"(guided phase shared: {trunk_s:.0f}s so far)")
        runs.sort(key=lambda r: fractions.index(r["guided_fraction"]))
    wall = time.perf_counter() - wall0

    summary = {"checkpoint": path.name, "teacher_mIoU": teacher["mIoU"], "pseudo_label_mIoU_train": pseudo["mIoU"],
               "teacher_eval_s": teacher_eval_s, "pseudo_label_s": pseudo_s,
               "students": [{"guided_fraction": r["guided_fraction"], "mIoU": r["scores"]["mIoU"],
                             "pixel_acc": r["scores"]["pixel_accuracy"], "train_s": r["train_s"],
                             "final_loss": r["final_loss"]} for r in runs],
               "wall_s": wall, "config": vars(args)}
    print(json.dumps(summary, indent=1))

    def pct(v):
        return f"{100 * (v or 0):.1f}"

    table = ["| | mIoU | pixel accuracy | time |", "|---|---|---|---|",
             f"| teacher: MaskCLIP (KS+PD) on the toy CLIP | {pct(teacher['mIoU'])} | "
             f"{pct(teacher['pixel_accuracy'])} | {1000 * teacher_eval_s / len(eval_scenes):.0f} ms/scene |"]
    for r in runs:
        table.append(f"| student, {phase_text(r['guided_fraction'])} | **{pct(r['scores']['mIoU'])}** | "
                     f"{pct(r['scores']['pixel_accuracy'])} | train {r['train_s'] / 60:.1f} min "
                     f"({r['images_per_s']:.1f} img/s) |")
    header = "| class | teacher IoU | " + " | ".join(f"student ({phase_text(r['guided_fraction'])})" for r in runs)
    per_class = [header + " |", "|---|---|" + "---|" * len(runs)]
    for c in names:
        per_class.append(f"| {c} | {pct(teacher['per_class_iou'][c])} | "
                         + " | ".join(pct(r["scores"]["per_class_iou"][c]) for r in runs) + " |")
    body = f"""{machine_line()}; {args.threads} torch threads, device {args.device}.

Teacher: MaskCLIP (dense mode maskclip, key smoothing + prompt denoising at 0.5, the annotator's defaults) on
the toy CLIP `{path.name}`, scale {toy_clip.IMAGE_SIZE} (an 8x8 patch grid), classes = the 12 "colour shape"
names + background prompt "background". Its pseudo labels of {len(items)} training scenes (seed {args.train_seed},
not the held-out stream) come from `fill_teacher_cache` into a `TeacherCache`, as in `maskclip train`
({pseudo_s:.0f} s); against those scenes' ground truth they score {pct(pseudo['mIoU'])} mIoU.
Student: `{args.student}`, **random initialisation** (no ImageNet weights offline), classifier = the toy CLIP's
text embeddings of the {len(rows)} prompt rows (frozen), trained with `maskclip.train.train`: {args.iters}
iterations, batch {args.batch_size}, crops {args.crop_size} from scenes scaled to short side {args.base_size} x
U(0.5, 2) (at scale 1 the student's 1/8-stride output is {args.base_size // 8}x{args.base_size // 8}; the teacher's patches are 8x8
on the 64x64 scene), flip + colour jitter, SGD lr {args.lr} poly{"" if args.confidence_threshold is None else
f", teacher pixels below confidence {args.confidence_threshold} ignored"}{"" if args.self_train_threshold is None
else f", self-training threshold {args.self_train_threshold}"}. Scored on {len(eval_scenes)} held-out scenes against
their ground truth (`maskclip.metrics`, {k} classes).

{chr(10).join(table)}

{chr(10).join(per_class)}

{reading(teacher, cm_teacher, runs, names)}

Whole benchmark: {wall / 60:.1f} min wall time.
"""
    print(body)
    if args.write:
        write_section(HEADING, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
