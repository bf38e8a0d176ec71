"""Project store benchmark: a synthetic project of 10 000 tiny images (issue 3: opens in under 2 s).

Measures creating the project, opening it (in a fresh interpreter and in-process), listing image states
with a cold and a warm summary cache, and per-image label reads/writes. Prints the numbers and replaces
the "Project store" section of bench/results.md with them.

    .venv/bin/python bench/bench_project_open.py [--images 10000] [--labelled 1000] [--size 16]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from maskclip.project import Project

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import RESULTS, machine_line, timed, write_section  # noqa: E402

HEADING = "## Project store (bench/bench_project_open.py)"

OPEN_IN_FRESH_PROCESS = """
import sys, time
t0 = time.perf_counter()
from maskclip.atomic import atomic_write
from maskclip.project import Project
t1 = time.perf_counter()
p = Project.open(sys.argv[1])
n = len(p.image_ids)
t2 = time.perf_counter()
print(f"{t1 - t0:.4f} {t2 - t1:.4f} {n}")
"""


def _median_time(fn, repeats: int = 1) -> float:
    return statistics.median(timed(fn, repeats))


def run(n_images: int, n_labelled: int, size: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for i in range(n_images):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(src / f"img{i:06d}.png")
        root = Path(tmp) / "proj"
        t = _median_time(lambda: Project.create(root, src, ["road", "car", "sky", "tree"]))
        rows.append((f"create (copy {n_images} images of {size}x{size})", f"{t:.1f} s"))

        out = subprocess.run([sys.executable, "-c", OPEN_IN_FRESH_PROCESS, str(root)], capture_output=True,
                             text=True, check=True).stdout.split()
        rows.append(("import maskclip.project (fresh interpreter)", f"{float(out[0]):.2f} s"))
        rows.append((f"Project.open, fresh interpreter ({out[2]} images)", f"{float(out[1]) * 1000:.0f} ms"))
        rows.append(("Project.open, in process (median of 5)", f"{_median_time(lambda: Project.open(root), 5) * 1000:.0f} ms"))

        p = Project.open(root)
        ids = p.image_ids[:n_labelled]
        write_times, merge_times, read_times = [], [], []
        for image_id in ids:
            labels = rng.integers(0, 4, (size, size)).astype(np.uint8)
            write_times.append(_median_time(lambda: p.set_labels(image_id, labels, verified=labels == 0)))
            merge_times.append(_median_time(lambda: p.merge_prediction(image_id, rng.integers(0, 4, (size, size)))))
            read_times.append(_median_time(lambda: p.get_labels_and_verified(image_id)))
        p.flush()
        rows.append((f"set_labels with verified mask (median of {len(ids)})",
                     f"{statistics.median(write_times) * 1000:.1f} ms"))
        rows.append(("merge_prediction (median)", f"{statistics.median(merge_times) * 1000:.1f} ms"))
        rows.append(("get_labels_and_verified (median)", f"{statistics.median(read_times) * 1000:.2f} ms"))

        (root / "summary.json").unlink()
        cold = _median_time(lambda: Project.open(root).list_images())
        warm = _median_time(lambda: Project.open(root).list_images(), 3)
        rows.append((f"open + list_images, {n_labelled} labelled, no summary cache", f"{cold * 1000:.0f} ms"))
        rows.append(("open + list_images, summary cache present (median of 3)", f"{warm * 1000:.0f} ms"))
        rows.append(("open + status() (per-class counts)", f"{_median_time(lambda: Project.open(root).status()) * 1000:.0f} ms"))
    return rows


def write_results(rows: list[tuple[str, str]], args) -> None:
    lines = [f"{machine_line()}; {args.images} images of {args.size}x{args.size} px, {args.labelled} of them "
             "labelled. Target (issue 3): open a 10 000-image project in under 2 s.", "",
             "| step | time |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    write_section(HEADING, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--labelled", type=int, default=1000)
    parser.add_argument("--size", type=int, default=16)
    args = parser.parse_args()
    rows = run(args.images, args.labelled, args.size)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    write_results(rows, args)
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
