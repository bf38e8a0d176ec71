"""*Refine dataset* through the path users take: does `maskclip train` + `maskclip refine` with the default
settings make a project's labels better than its zero-shot labels? Old defaults vs new, on the toy CLIP.

Two projects of toy scenes (maskclip.toy_clip: scenes with pixel ground truth) are built with the real CLI
(`maskclip project init`), set to the toy CLIP (../shared/models, `MASKCLIP_TOY_CLIP_DIR`) at its image size
(what the annotator's settings store), and labelled zero-shot with `maskclip project segment` (the project's
dense mode, maskclip KS+PD). Then, per arm and training seed, on fresh copies of both projects:
`maskclip train` on the training project, `maskclip refine` of the training project (the images the student
learned from: what *Refine dataset* does) and of the held-out project (images it never saw).
The stored labels are scored against the ground truth (mIoU over the 12 shapes + background; a project's
background is its unlabelled value 255) before and after refine.

Arms (every other flag left at its default; `--crop-size/--base-size 64` in both: the toy images are 64 px):
- new defaults: no recipe flag (for the clip student, the CPU default: SCLIP teacher, confidence-keep 0.2,
  EMA 0.99, 300 iterations at batch 16: maskclip.defaults.CLIP_STUDENT_TRAIN_DEFAULTS);
- old defaults, as flags: --dense-mode maskclip (the project's mode) --confidence-keep 1 (keep all)
  --ema-decay 0 (the average is the current weights: no EMA in effect) --iters 2000 --batch-size 8.

    MASKCLIP_TOY_CLIP_DIR=../shared/models .venv/bin/python bench/bench_refine_project.py [--jobs 2] [--write]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import machine_line, write_section  # noqa: E402

from maskclip import toy_clip  # noqa: E402
from maskclip.defaults import CLIP_STUDENT_TRAIN_DEFAULTS, UNLABELLED  # noqa: E402
from maskclip.metrics import confusion_matrix, scores_from_confusion  # noqa: E402
from maskclip.project import Project  # noqa: E402
from maskclip.settings import method_update  # noqa: E402

HEADING = "## Refine through the project: old vs new `maskclip train` defaults on the toy CLIP (bench/bench_refine_project.py)"
TRAIN_SEED = 20_261_202  # as bench_toy_student_vs_teacher: the training scenes' own stream
IMAGE_FLAGS = ["--crop-size", str(toy_clip.IMAGE_SIZE), "--base-size", str(toy_clip.IMAGE_SIZE)]
ARMS = {
    "old defaults (as flags)": ["--dense-mode", "maskclip", "--confidence-keep", "1", "--ema-decay", "0",
                                "--iters", "2000", "--batch-size", "8"],
    "new defaults (no flags)": [],
}
NAMES = list(toy_clip.CLASS_NAMES) + ["background"]


def cli(*argv: str, log: Path | None = None) -> str:
    """Run `python -m maskclip ARGV` (the real entry point) on one CPU thread; stdout back, a failure raises."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "maskclip", *argv], capture_output=True, text=True, env=env)
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ maskclip {' '.join(argv)}\n{proc.stderr[-4000:]}\n")
    if proc.returncode != 0:
        raise RuntimeError(f"maskclip {' '.join(argv)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


def make_project(root: Path, scenes, toy_path: Path) -> Path:
    """`maskclip project init` on the scenes' PNGs; then the toy CLIP at its image size as the project's model."""
    images = root / "images"
    images.mkdir(parents=True)
    for i, s in enumerate(scenes):
        Image.fromarray(s.image).save(images / f"scene-{i:05d}.png")
    classes = root / "classes.json"
    classes.write_text(json.dumps(list(toy_clip.CLASS_NAMES)))
    project = root / "project"
    cli("project", "init", str(project), "--images", str(images), "--classes-file", str(classes),
        "--background", ",".join(toy_clip.BACKGROUND_PROMPTS))
    p = Project.open(project)  # what the annotator's settings panel stores
    p.update_settings({"model": {"name": toy_clip.MODEL_NAME, "pretrained": str(toy_path)}})
    p.update_settings(method_update({}, [toy_clip.IMAGE_SIZE]))
    return project


def score(project: Path, scenes) -> float:
    """mIoU (%) of the project's stored labels against the scenes' ground truth."""
    p = Project.open(project)
    k = len(NAMES)
    cm = np.zeros((k, k + 1), np.int64)
    for image_id in p.image_ids:
        labels = p.get_labels(image_id).copy()
        labels[labels == UNLABELLED] = toy_clip.BACKGROUND_LABEL  # the project's background: unlabelled
        cm += confusion_matrix(scenes[int(image_id.rsplit("-", 1)[1])].labels, labels, k)
    return 100 * scores_from_confusion(cm, NAMES)["mIoU"]


def one_run(work: Path, arm: str, seed: int, projects: dict, scenes: dict) -> dict:
    """Copies of both projects, train on the training one with the arm's flags, refine both, score."""
    folder = work / f"{'old' if arm.startswith('old') else 'new'}-seed{seed}"
    folder.mkdir()
    log = folder / "log.txt"
    copies = {split: shutil.copytree(path, folder / split) for split, path in projects.items()}
    run = folder / "run"
    t0 = time.perf_counter()
    cli("train", str(copies["train"]), "--run", str(run), "--seed", str(seed), *IMAGE_FLAGS, *ARMS[arm], log=log)
    train_s = time.perf_counter() - t0
    config = json.loads((run / "config.json").read_text())
    out = {"arm": arm, "seed": seed, "train_s": train_s, "teacher": config["info"]["clip"]["dense_mode"],
           "config": {k: config["train"][k] for k in ("student", "iters", "batch_size", "confidence_keep", "ema_decay")}}
    for split in ("train", "held"):
        cli("refine", str(copies[split]), "--run", str(run), log=log)
        out[split] = score(copies[split], scenes[split])
    print(f"{arm}, seed {seed}: refined train {out['train']:.1f}, held-out {out['held']:.1f} "
          f"(teacher {out['teacher']}, {train_s:.0f} s)", file=sys.stderr, flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-scenes", type=int, default=300)
    ap.add_argument("--eval", type=int, default=200, help="held-out scenes (a second project)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (one CPU thread each)")
    ap.add_argument("--keep", help="keep the projects and runs in this folder (default: a temporary one)")
    ap.add_argument("--write", action="store_true", help="write the numbers into bench/results.md")
    args = ap.parse_args()

    toy_path = toy_clip.find_checkpoint()
    if toy_path is None or not toy_path.is_file():
        print("no toy CLIP checkpoint: set MASKCLIP_TOY_CLIP_DIR=../shared/models or build it with "
              "`python -m maskclip.toy_clip`", file=sys.stderr)
        return 1
    wall0 = time.perf_counter()
    scenes = {"train": toy_clip.held_out_scenes(args.train_scenes, seed=TRAIN_SEED),
              "held": toy_clip.held_out_scenes(args.eval)}
    tmp = tempfile.TemporaryDirectory() if args.keep is None else None
    work = Path(args.keep or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        projects, zero_shot, sclip = {}, {}, {}
        for split in ("train", "held"):
            projects[split] = make_project(work / f"base-{split}", scenes[split], toy_path)
            cli("project", "segment", str(projects[split]))  # the project's settings: maskclip KS+PD
            zero_shot[split] = score(projects[split], scenes[split])
            # the new default teacher's own labels, for comparison: a copy segmented in SCLIP's mode
            copy = shutil.copytree(projects[split], work / f"sclip-{split}")
            cli("project", "segment", str(copy), "--dense-mode", "sclip")
            sclip[split] = score(copy, scenes[split])
            print(f"zero-shot {split}: {zero_shot[split]:.1f} (sclip {sclip[split]:.1f})", file=sys.stderr, flush=True)
        jobs = [(arm, seed) for arm in ARMS for seed in args.seeds]
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            results = list(pool.map(lambda j: one_run(work, j[0], j[1], projects, scenes), jobs))
    finally:
        if tmp is not None:
            tmp.cleanup()

    table = ["| labels | teacher | training | seeds | training project mIoU | per seed | held-out project mIoU | "
             "per seed | vs zero-shot (train / held-out) | train time / seed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    table.append(f"| zero-shot (`project segment`, the project's maskclip KS+PD) | - | - | - | {zero_shot['train']:.1f} | "
                 f"- | {zero_shot['held']:.1f} | - | - | - |")
    table.append(f"| zero-shot, `project segment --dense-mode sclip` (the new default teacher) | - | - | - | "
                 f"{sclip['train']:.1f} | - | {sclip['held']:.1f} | - | - | - |")
    summary = {}
    for arm in ARMS:
        rs = [r for r in results if r["arm"] == arm]
        t = rs[0]["config"]
        m = {split: float(np.mean([r[split] for r in rs])) for split in ("train", "held")}
        summary[arm] = m
        training = (f"{t['student']}, {t['iters']} it. x {t['batch_size']}, keep {t['confidence_keep']}, "
                    f"EMA {t['ema_decay']}")
        per_seed = {split: " / ".join(f"{r[split]:.1f}" for r in rs) for split in ("train", "held")}
        table.append(f"| refined, {arm} | {rs[0]['teacher']} | {training} | {len(rs)} | **{m['train']:.1f}** | "
                     f"{per_seed['train']} | **{m['held']:.1f}** | {per_seed['held']} | "
                     f"{m['train'] - zero_shot['train']:+.1f} / {m['held'] - zero_shot['held']:+.1f} | "
                     f"{np.mean([r['train_s'] for r in rs]):.0f} s |")
    new = summary["new defaults (no flags)"]
    worst_new = min(min(r["train"] - zero_shot["train"], r["held"] - zero_shot["held"])
                    for r in results if r["arm"].startswith("new"))
    wall = time.perf_counter() - wall0
    body = f"""{machine_line()}; every CLI call on 1 torch thread, {args.jobs} run(s) in parallel on the 2 cores
(no other CPU-heavy job at the time).

Two projects built with `maskclip project init` from toy scenes: {args.train_scenes} training scenes (seed
{TRAIN_SEED}) and {args.eval} held-out scenes (`toy_clip.held_out_scenes`), model set to the toy CLIP
`{toy_path.name}` at scale {toy_clip.IMAGE_SIZE} (the project's settings), labelled by `maskclip project segment`
with the project's defaults (maskclip, KS + PD). Per arm and training seed, on copies of both projects:
`maskclip train TRAIN_PROJECT --run RUN --seed S --crop-size 64 --base-size 64 [arm flags]` (student `auto`:
clip on the CPU), then `maskclip refine` of both projects (default --min-confidence). Scored: the projects'
stored labels against the ground truth (mIoU, 12 shapes + background). Old defaults are reached through flags:
`{' '.join(ARMS['old defaults (as flags)'])}` (keep 1 = every pixel; EMA decay 0 = the current weights).
New defaults: {CLIP_STUDENT_TRAIN_DEFAULTS}.

{chr(10).join(table)}

With the new defaults the refined labels are {new['train'] - zero_shot['train']:+.1f} (training project) and
{new['held'] - zero_shot['held']:+.1f} (held-out project) mIoU from the zero-shot labels (worst single run and
project: {worst_new:+.1f}), and {new['train'] - sclip['train']:+.1f} / {new['held'] - sclip['held']:+.1f} from the
labels of their SCLIP teacher. Whole run {wall / 60:.1f} min.
"""
    print(body)
    if args.write:
        write_section(HEADING, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
