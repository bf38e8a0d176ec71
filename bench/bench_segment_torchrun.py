"""Wall time of `maskclip project segment` on CamVid images: one process vs `torchrun --nproc-per-node N`.

Each run is the real command on a fresh project of the same --images CamVid test images (referenced, not copied),
from process start to exit (torch import, model load, every image segmented and merged). Every process gets
--threads torch threads (OMP_NUM_THREADS), so N processes use N times the cores of one: on this 2-core machine
2 x 1 thread is the whole CPU. The labels of the two runs are compared (`project segment` draws random weights from
the same seed in every process).

    .venv/bin/python bench/bench_segment_torchrun.py [--images 20] [--processes 2] [--write]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import machine_line, write_section  # noqa: E402

from maskclip.project import Project  # noqa: E402

HEADING = "## project segment under torchrun: one process vs several on CPU (bench/bench_segment_torchrun.py)"
CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


def run(cmd: list[str], threads: int) -> tuple[float, str, float]:
    """(wall seconds, stdout, the machine's 1-minute load average when it ended: other jobs' share of the cores)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return seconds, res.stdout, os.getloadavg()[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--short-side", type=int, default=336)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if not (CAMVID / "test" / "images").is_dir():
        print(f"CamVid not found at {CAMVID}", file=sys.stderr)
        return 1
    files = sorted((CAMVID / "test" / "images").glob("*.jpg"))[:args.images]
    classes = json.loads((CAMVID / "classes.json").read_text())["classes"]
    segment = ["-m", "maskclip", "project", "segment", "--model", args.model, "--pretrained", "none",
               "--scales", str(args.short_side), "--device", "cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        one = Project.create(Path(tmp) / "one", files, classes, copy=False)
        many = Project.create(Path(tmp) / "many", files, classes, copy=False)
        single_s, _, single_load = run([sys.executable, *segment[:4], str(one.root), *segment[4:]], args.threads)
        print(f"1 process: {single_s:.1f} s", file=sys.stderr, flush=True)
        launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.processes)]
        multi_s, out, multi_load = run([sys.executable, *launcher, *segment[:4], str(many.root), *segment[4:]], args.threads)
        print(f"{args.processes} processes: {multi_s:.1f} s", file=sys.stderr, flush=True)
        one, many = Project.open(one.root), Project.open(many.root)
        same = all(np.array_equal(one.get_labels(i), many.get_labels(i)) for i in one.image_ids)
        summary = [line for line in out.splitlines() if line.startswith("segmented")]
    table = ["| processes | threads each | wall time | images/s | ratio to 1 process | load average at its end |",
             "|---|---|---|---|---|---|",
             f"| 1 | {args.threads} | {single_s:.1f} s | {len(files) / single_s:.2f} | 1.00 | {single_load:.1f} |",
             f"| {args.processes} (torchrun, gloo) | {args.threads} | {multi_s:.1f} s | {len(files) / multi_s:.2f} | "
             f"{multi_s / single_s:.2f} | {multi_load:.1f} |"]
    body = f"""{machine_line()}; the 2 cores shared with other jobs (several helpers ran tests and benchmarks at the
same time, so the ratio is indicative only).

`maskclip project segment` with {args.model} (random weights) at short side {args.short_side} on {len(files)} CamVid
test images (480x360), wall time from process start to exit (torch import and model load included, in every
process). {args.processes} processes: {summary[0] if summary else ''}. Labels identical to the single process:
{'yes' if same else 'NO'}.

{chr(10).join(table)}
"""
    print(body)
    if args.write:
        write_section(HEADING, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
