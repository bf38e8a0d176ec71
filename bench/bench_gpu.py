"""Images per second of every step of the pipeline on one device: segment, pseudo labels, training, refine.

Each step runs through the code the command line runs, on a project of --images CamVid images
(../shared/data/camvid, 480x360; synthetic images of that size where the data is absent):

- segment: `maskclip.batch.run_batch` with MaskCLIP's `segment` and the project merge (`maskclip project
  segment`'s loop), on a fresh model without a disk cache, so every image runs the encoder;
- pseudo labels: `maskclip.train.targets.fill_teacher_cache` (what `maskclip train` runs first), another fresh model;
- training: `maskclip.train.train` for --iters iterations at --batch-size (images/s = iterations x batch / s);
- refine: `maskclip.train.project_run.refine_project` (student prediction + merge of every image).

On CUDA the inference steps autocast to bfloat16 (float16 without it; `maskclip.precision`, --no-amp for
float32), sliding windows go through the encoder 16 at a time and refine predicts 8 same-size images per pass;
training uses float16 with a gradient scaler.
The CPU runs float32. CLIP weights are random (`--pretrained none`: nothing is downloaded; the speed is that of
the architecture) unless --pretrained names a tag or file. The first image of each inference step is a warm-up
and not timed (CUDA kernels, caches); training's rate is the trainer's own (all iterations).

    # a GPU (the defaults: ViT-B/16 at short side 336 with 224-px windows, the paper's DeepLabV3-ResNet-101)
    .venv/bin/python bench/bench_gpu.py --write
    # the CPU, a small configuration that proves the script end to end
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_gpu.py --device cpu --model maskclip-tiny-vit --images 6 \\
        --short-side 224 --student clip --iters 4 --batch-size 2 --crop-size 128 --write
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import machine_line, write_section  # noqa: E402

import maskclip  # noqa: E402
from maskclip.batch import Prediction, run_batch  # noqa: E402
from maskclip.precision import autocast_dtype, precision_name  # noqa: E402
from maskclip.project import Project  # noqa: E402
from maskclip.prompts import prompt_rows  # noqa: E402
from maskclip.settings import clip_spec  # noqa: E402
from maskclip.train import AugmentConfig, TeacherCache, TrainConfig, train  # noqa: E402
from maskclip.train.distributed import resolve_device  # noqa: E402
from maskclip.train.project_run import project_items, refine_project  # noqa: E402
from maskclip.train.targets import fill_teacher_cache  # noqa: E402

HEADING = "## Throughput of each pipeline step on one device (bench/bench_gpu.py)"
CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


def image_files(n: int, folder: Path) -> tuple[list[Path], list[str], str]:
    """n CamVid test images and its classes, or synthetic 480x360 images (written to `folder`) and four classes."""
    import json

    if (CAMVID / "test" / "images").is_dir():
        files = sorted((CAMVID / "test" / "images").glob("*.jpg"))[:n]
        classes = json.loads((CAMVID / "classes.json").read_text())["classes"]
        return files, classes, f"CamVid test ({len(files)} images, 480x360)"
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        files.append(folder / f"synthetic{i:03d}.png")
        Image.fromarray(rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)).save(files[-1])
    return files, ["road", "car", "tree", "sky"], f"synthetic ({n} images, 480x360; ../shared/data absent)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(times: list[float]) -> tuple[int, float]:
    """(timed images, images/s) without the warm-up image."""
    timed = times[1:] if len(times) > 1 else times
    return len(timed), len(timed) / max(sum(timed), 1e-9)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--pretrained", default="none", help="open_clip tag or file; none = random weights")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--short-side", type=int, default=336)
    ap.add_argument("--window", type=int, default=224, help="sliding window side (0: the whole image at once)")
    ap.add_argument("--stride", type=int, default=112)
    ap.add_argument("--student", default="auto", help="auto: DeepLabV3-ResNet-101 on CUDA, clip on the CPU")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop-size", type=int, default=512)
    ap.add_argument("--no-amp", action="store_true", help="float32 on CUDA too")
    ap.add_argument("--section-note", default="", help="appended to the results.md heading (one section per note)")
    ap.add_argument("--write", action="store_true", help="write the table into bench/results.md")
    args = ap.parse_args()

    device = resolve_device(args.device)
    precision = "float32" if args.no_amp else "auto"
    pretrained = None if args.pretrained.lower() in ("none", "random") else args.pretrained
    steps = []  # (step, images timed, seconds, images/s, note)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files, classes, source = image_files(args.images, tmp / "synthetic")
        project = Project.create(tmp / "project", files, classes, copy=False)
        # the project's method (KS + PD, its background prompts) at this short side and these windows
        spec = clip_spec(project, args.model, args.pretrained, None, None,
                         {"window": args.window, "stride": args.stride} if args.window else {})
        spec["segment"]["scales"] = (args.short_side,)
        options = spec["segment"]

        def load():
            torch.manual_seed(0)
            return maskclip.load(args.model, pretrained, device, precision=precision)

        # segment: project segment's loop (predict, merge), the encoder on every image
        model = load()
        times = []

        def predict(image_id):
            start = time.perf_counter()
            seg = model.segment(project.get_image(image_id), project.prompts, **options)
            sync(device)
            times.append(time.perf_counter() - start)
            return Prediction(seg.labels, seg.probs.max(axis=0), seg.class_names)

        totals, last = [], [time.perf_counter()]

        def outcome(_, so_far):  # predict + merge of one image
            now = time.perf_counter()
            totals.append(now - last[0])
            last[0] = now

        run_batch(project, project.image_ids, predict, source="bench", on_outcome=outcome)
        n, ips = rate(times)
        steps.append(("segment: MaskCLIP", n, sum(times[-n:]), ips, "`MaskCLIP.segment` alone"))
        n, ips = rate(totals)
        steps.append(("segment: MaskCLIP + merge", n, sum(totals[-n:]), ips, "`project segment`'s loop"))
        print(f"segment: {ips:.2f} images/s", file=sys.stderr, flush=True)

        # pseudo labels: what `maskclip train` computes first, with a fresh model
        model = load()
        rows, groups, names, _ = prompt_rows(project.prompts, spec["segment"]["background"])
        items, _ = project_items(project, log=lambda m: None)
        cache = TeacherCache(tmp / "run" / "teacher", {"bench": True}).open()
        times = []
        last = [time.perf_counter()]

        def progress(done):
            sync(device)
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now

        fill_teacher_cache(cache, items, model, project.prompts, spec["segment"], names, progress=progress)
        n, ips = rate(times)
        steps.append(("pseudo labels", n, sum(times[-n:]), ips, "`fill_teacher_cache` (+ writing the cache)"))
        print(f"pseudo labels: {ips:.2f} images/s", file=sys.stderr, flush=True)

        # training: the MaskCLIP+ loop, the student's own rate
        embeddings = model.encode_text(rows).detach().cpu()
        config = TrainConfig(iters=args.iters, batch_size=args.batch_size, student=args.student,
                             imagenet_backbone=False, amp=not args.no_amp, checkpoint_every=args.iters,
                             log_every=max(1, args.iters // 5),
                             augment=AugmentConfig(crop_size=args.crop_size, base_size=args.short_side))
        result = train(items, cache, embeddings, names, tmp / "run", config, class_groups=groups, clip_model=model,
                       info={"clip": spec, "rows": rows, "groups": groups},
                       log=lambda m: print(f"train: {m}", file=sys.stderr, flush=True))
        model = None  # free the CLIP before refine
        steps.append(("training", args.iters * args.batch_size, result.seconds, result.images_per_s,
                      f"`train`: {config.student}, {args.iters} iterations at batch {args.batch_size}, "
                      f"crop {args.crop_size}"))

        # refine: the student relabels the project (prediction + merge)
        times = []
        last = [time.perf_counter()]

        def refined(done, total):
            sync(device)
            now = time.perf_counter()
            if done:
                times.append(now - last[0])
            last[0] = now

        refine_project(project.root, tmp / "run", device=str(device), precision=precision, log=lambda m: None,
                       progress=refined)
        n, ips = rate(times)
        steps.append(("refine", n, sum(times[-n:]), ips, "`refine_project`: student + merge"))

    dtype = autocast_dtype(device, precision)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    table = ["| step | images timed | seconds | images/s | |", "|---|---|---|---|---|"]
    for step, n, seconds, ips, note in steps:
        table.append(f"| {step} | {n} | {seconds:.1f} | **{ips:.2f}** | {note} |")
    window = f"{args.window}-px windows, stride {args.stride}" if args.window else "whole image"
    load = os.getloadavg()[0]  # on a shared machine: how much of the CPU other jobs took
    shared = " (above the core count: other jobs shared the cores)" if load > (os.cpu_count() or 1) else ""
    body = f"""{machine_line()}; device {device} ({gpu}), inference {precision_name(dtype)}, {torch.get_num_threads()} torch threads;
load average {load:.1f} at the end{shared}.

{args.model} ({args.pretrained} weights) at short side {args.short_side}, {window}; {source}.
The first image of segment, pseudo labels and refine is a warm-up, not timed.

{chr(10).join(table)}
"""
    print(body)
    if args.write:
        write_section(HEADING + (f", {args.section_note}" if args.section_note else ""), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
