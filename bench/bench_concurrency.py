"""Two writers on one project (issue 12): an annotator-like writer commits verified strokes while another
process runs `maskclip project segment` and `maskclip refine` in a loop. Counts lost commits and lost
verified strokes (both must be 0) and times the annotator's saves (lock waits included).

Issue 16: two editors that save from their own copies (as the annotator's layer is), and an editor beside
`maskclip project import-labels --verified`: counts the other writer's verified pixels lost and pixels
falsely verified (both must be 0; before the fix all 4,320 of B's stroke pixels were lost).

Prints the numbers and replaces the "Concurrent writers" section of bench/results.md.

    .venv/bin/python bench/bench_concurrency.py [--commits 150] [--images 4] [--size 192 256]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image

from maskclip.project import Project

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import RESULTS, machine_line, write_section  # noqa: E402

HEADING = "## Concurrent writers (bench/bench_concurrency.py)"

CLI_LOOP = textwrap.dedent("""
    import contextlib, io, sys
    from pathlib import Path
    from maskclip.cli import main
    root, run, stop = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    n = 0
    while not stop.exists():
        command = ["project", "segment", root, "--device", "cpu"] if n % 2 == 0 else \\
            ["refine", root, "--run", run, "--device", "cpu"]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(command)
        assert code == 0, (command, code)
        n += 1
        print(command[0] if command[0] == "refine" else "segment", flush=True)
""")


EDITOR = textwrap.dedent("""
    import sys
    import numpy as np
    from maskclip.project import Project
    root, image_id, r0, strokes, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    pause = int(sys.argv[6])
    p = Project.open(root)
    labels, verified = p.get_labels_and_verified(image_id)  # its own copy, never re-read
    print("ready", flush=True)
    sys.stdin.readline()
    for k in range(strokes):
        if k == pause:  # let another writer commit between two saves from the same copy
            print("paused", flush=True)
            sys.stdin.readline()
        r, c = r0 + 6 * (k // 20), 6 * (k % 20)
        labels[r:r + 6, c:c + 6], verified[r:r + 6, c:c + 6] = k % 2, True
        p.set_labels(image_id, labels, verified=verified, source=f"{go} {k}")
""")
STROKE_PX = 36


def _stroke_mask(shape, r0: int, strokes: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for k in range(strokes):
        r, c = r0 + 6 * (k // 20), 6 * (k % 20)
        mask[r:r + 6, c:c + 6] = True
    return mask


def _start_editor(tmp: Path, root: Path, image_id: str, r0: int, strokes: int, name: str, env: dict,
                  pause: int = -1):
    script = tmp / "editor.py"
    script.write_text(EDITOR)
    proc = subprocess.Popen([sys.executable, str(script), str(root), image_id, str(r0), str(strokes), name, str(pause)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    proc.stdout.readline()
    return proc


def run_editors(strokes: int) -> list[tuple[str, str]]:
    """Editor vs editor and editor vs `project import-labels --verified`, all from their own copies."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    shape = (6 * (2 * ((strokes + 19) // 20)) + 12, 120)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "src").mkdir()
        Image.fromarray(np.zeros((*shape, 3), np.uint8)).save(tmp / "src" / "im.png")
        root = tmp / "proj"
        Project.create(root, tmp / "src", ["red", "blue"], history=10)
        half = shape[0] // 2
        # two editors, each from its own copy
        a = _start_editor(tmp, root, "im", 0, strokes, "A", env)
        b = _start_editor(tmp, root, "im", half, strokes, "B", env)
        for proc in (a, b):
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in (a, b):
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise SystemExit(f"an editor failed:\n{err}")
        labels, verified = Project.open(root).get_labels_and_verified("im")
        mine, theirs = _stroke_mask(shape, 0, strokes), _stroke_mask(shape, half, strokes)
        lost = int((mine & ~verified).sum() + (theirs & ~verified).sum())
        false = int((verified & ~mine & ~theirs).sum())
        rows.append((f"editor vs editor ({strokes} strokes of {STROKE_PX} px each, own copies): "
                     "stroke px lost / falsely verified", f"{lost} of {int(mine.sum() + theirs.sum())} / {false}"))

        # an editor beside `project import-labels --verified` (the lower half labelled 'blue')
        Project.open(root).clear_labels("im")
        (tmp / "labels").mkdir()
        imported = np.full(shape, 255, np.uint8)
        imported[half:] = 1
        Image.fromarray(imported).save(tmp / "labels" / "im.png")
        editor = _start_editor(tmp, root, "im", 0, strokes, "A", env, pause=strokes // 2)
        editor.stdin.write("go\n")
        editor.stdin.flush()
        editor.stdout.readline()  # half its strokes saved: the import lands, then it saves the rest
        subprocess.run([sys.executable, "-m", "maskclip", "project", "import-labels", str(root), str(tmp / "labels"),
                        "--verified", "--format", "index"], check=True, capture_output=True, env=env)
        _, err = editor.communicate("go\n", timeout=600)
        if editor.returncode != 0:
            raise SystemExit(f"the editor failed:\n{err}")
        labels, verified = Project.open(root).get_labels_and_verified("im")
        blue = imported == 1
        kept = int((verified & blue & (labels == 1)).sum())
        # an import --verified replaces the whole image (its 255 pixels included): the strokes saved before it
        # are replaced by design; those saved after it must all be there
        after = _stroke_mask(shape, 0, strokes) & ~_stroke_mask(shape, 0, strokes // 2)
        lost = int((after & ~verified).sum())
        false = int((verified & ~after & ~blue).sum())
        rows.append(("editor vs `import-labels --verified` between its saves: imported verified px kept / "
                     "stroke px saved after the import lost / falsely verified",
                     f"{kept} of {int(blue.sum())} / {lost} of {int(after.sum())} / {false}"))
    return rows


def run(commits: int, n_images: int, size: tuple[int, int]) -> list[tuple[str, str]]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "src").mkdir()
        for i in range(n_images):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(tmp / "src" / f"im{i}.png")
        root = tmp / "proj"
        Project.create(root, tmp / "src", ["red", "blue"], history=100000,
                       settings={"model": {"name": "maskclip-tiny-vit", "pretrained": None},
                                 "method": {"scales": [32]}})
        subprocess.run([sys.executable, "-m", "maskclip", "train", str(root), "--run", str(tmp / "run"), "--iters", "2",
                        "--batch-size", "2", "--student", "lraspp_mobilenet_v3_large", "--no-imagenet",
                        "--crop-size", "32", "--base-size", "32", "--device", "cpu"],
                       check=True, capture_output=True, env=env)
        (tmp / "loop.py").write_text(CLI_LOOP)
        stop = tmp / "stop"
        cli = subprocess.Popen([sys.executable, str(tmp / "loop.py"), str(root), str(tmp / "run"), str(stop)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            cli.stdout.readline()  # the CLI job is running: start editing beside it
            editor = Project.open(root)
            layers = {i: list(editor.get_labels_and_verified(i)) for i in editor.image_ids}
            strokes, times = {i: {} for i in editor.image_ids}, []
            width = size[1]
            t0 = time.perf_counter()
            for k in range(commits):
                image_id = editor.image_ids[k % n_images]
                labels, verified = layers[image_id]
                y, x = divmod(k // n_images, width)
                labels[y, x], verified[y, x] = k % 2, True
                start = time.perf_counter()
                editor.set_labels(image_id, labels, verified=verified, source=f"annotator {k}")
                times.append(time.perf_counter() - start)
                strokes[image_id][k] = (y, x)
            editing_s = time.perf_counter() - t0
            stop.touch()
            out, err = cli.communicate(timeout=600)
        finally:
            stop.touch()
            if cli.poll() is None:
                cli.kill()
        if cli.returncode != 0:
            raise SystemExit(f"the CLI loop failed:\n{err}")
        runs = out.split()

        p = Project.open(root)
        lost_strokes, annotator_revs, other_revs = 0, 0, 0
        for image_id in p.image_ids:
            done = []
            for h in p.history(image_id):
                labels, verified = p.get_revision(image_id, h["rev"])
                if h["source"].startswith("annotator"):
                    annotator_revs += 1
                    done.append(int(h["source"].split()[1]))
                else:
                    other_revs += 1
                for k in done:
                    y, x = strokes[image_id][k]
                    lost_strokes += not (verified[y, x] and labels[y, x] == k % 2)
    ms = sorted(t * 1000 for t in times)
    return [
        ("annotator commits (verified strokes) / in history", f"{commits} / {annotator_revs}"),
        ("CLI runs beside them: project segment / refine", f"{runs.count('segment')} / {runs.count('refine')}"),
        ("revisions the CLI committed meanwhile", f"{other_revs}"),
        ("commits lost / verified strokes missing in a later revision", f"{commits - annotator_revs} / {lost_strokes}"),
        ("annotator save: median / 95th percentile / max (lock waits included)",
         f"{statistics.median(ms):.1f} / {ms[int(0.95 * (len(ms) - 1))]:.1f} / {ms[-1]:.1f} ms"),
        ("editing time for all commits", f"{editing_s:.1f} s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=150)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, nargs=2, default=(192, 256), metavar=("H", "W"))
    parser.add_argument("--editor-strokes", type=int, default=120)
    args = parser.parse_args()
    rows = run(args.commits, args.images, tuple(args.size)) + run_editors(args.editor_strokes)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    lines = [f"{machine_line()}; {args.images} images of {args.size[0]}x{args.size[1]} px, tiny random-weight CLIP "
             "and student. Target (issue 12): nothing lost (before the locks, 59 of 150 verified commits "
             "vanished in the issue's tight loop). Issue 16: editors saving from their own copies lose nothing and "
             "verify nothing of another writer's.", "", "| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    write_section(HEADING, "\n".join(lines))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
