"""Longest event-loop stall while the annotator opens a project and navigates its images (issue 10, point 6).

A 10 ms QTimer ticks on the GUI thread while the user's actions run: opening an image folder through the
plugin's reader (first open creates the project; a second viewer reopens it), then Next ▶ through every
image, then a brush stroke before each Next (the edit is saved). The longest gap between two ticks, minus the 10 ms interval, is the stall the user feels (the
viewer cannot repaint or take input meanwhile); a repaint of the unchanged window is measured too, as the
floor that drawing alone sets on this machine. Every image has stored labels (random blocks, part of
them verified), so navigating reads labels too. No model is loaded: this measures the I/O and the layers.

Two sets: CamVid 480x360 images from ../shared/data (target: no stall over 100 ms) and 12-Mpx JPEGs
(4000x3000, made by upscaling CamVid; target: 250 ms).

Run under a display (Xvfb):  xvfb-run -a -s "-screen 0 1600x1100x24" .venv/bin/python bench/bench_annotator_stalls.py
Prints the numbers and writes the "Annotator stalls" section of bench/results.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import machine_line, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "camvid" / "val" / "images"
HEADING = "## Annotator stalls (bench/bench_annotator_stalls.py)"
TICK_MS = 10
REPEATS = 3
JOB_TIMEOUT_S = 120


class StallProbe:
    """A 10 ms timer on the GUI thread; `longest` is the largest gap between ticks beyond the interval."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self._timer = QTimer(interval=TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._last = None
        self.longest = 0.0

    def _tick(self):
        now = time.perf_counter()
        self.longest = max(self.longest, now - self._last - TICK_MS / 1000)
        self._last = now

    def start(self):
        """Start timing now: the action that follows counts from this moment."""
        self.longest, self._last = 0.0, time.perf_counter()
        self._timer.start()

    def stop(self) -> float:
        self._timer.stop()
        return self.longest


def run_until(app, done, start: float, timeout_s: float = JOB_TIMEOUT_S, settle_s: float = 0.1) -> float:
    """Spin the event loop until done() holds (then a little longer so deferred work is measured too);
    the seconds from `start` to done."""
    end = None
    while True:
        app.processEvents()
        now = time.perf_counter()
        if end is None and done():
            end = now
        if end is not None and now - end > settle_s:
            return end - start
        if now - start > timeout_s:
            raise TimeoutError("the annotator did not finish in time")
        time.sleep(0.002)


def make_images(folder: Path, count: int, size: tuple[int, int] | None) -> None:
    """`count` CamVid images, upscaled to `size` (width, height) when given."""
    from PIL import Image

    folder.mkdir(parents=True)
    for path in sorted(CAMVID.iterdir())[:count]:
        if size is None:
            shutil.copy(path, folder / path.name)
        else:
            Image.open(path).convert("RGB").resize(size, Image.BILINEAR).save(folder / path.name, quality=90)


def add_labels(project, seed: int = 0) -> None:
    """Random 16x16-block labels on every image, the top third verified (stands for earlier work)."""
    rng = np.random.default_rng(seed)
    project.set_classes(["road", "car", "tree", "sky", "building"])
    for state in project.list_images():
        blocks = rng.integers(0, 5, (state.height // 16 + 1, state.width // 16 + 1)).astype(np.uint8)
        labels = np.kron(blocks, np.ones((16, 16), np.uint8))[: state.height, : state.width]
        verified = np.zeros_like(labels, bool)
        verified[: state.height // 3] = True
        project.set_labels(state.id, labels, verified=verified)


def measure(folder: Path, app, napari) -> dict:
    from maskclip.project import Project
    from maskclip_napari._dock import dock_annotator

    probe = StallProbe()
    results = {}

    def idle(widget):
        return (widget.project is not None and widget.current_id is not None
                and not getattr(widget, "loading", False) and not widget.busy)

    # start-up with a folder (`python -m maskclip_napari FOLDER`): the annotator docks and opens at once,
    # while napari's one-time layer warm-up and the annotator's empty layers are still being made
    scratch = folder.parent / "start-up"
    shutil.copytree(folder, scratch)
    viewer = napari.Viewer(show=True)
    probe.start()
    start = time.perf_counter()
    widget = dock_annotator(viewer)
    viewer.open(str(scratch), plugin="maskclip-napari")
    results["start-up: dock + open at once"] = (run_until(app, lambda: idle(widget), start), probe.stop())
    viewer.close()

    # first open: the reader creates the project (reads every image), then the first image shows; the
    # annotator was docked first and has made its layers (a user clicks Open after the window shows)
    viewer = napari.Viewer(show=True)
    widget = dock_annotator(viewer)
    run_until(app, lambda: widget.layers_prepared, time.perf_counter())
    probe.start()
    start = time.perf_counter()
    viewer.open(str(folder), plugin="maskclip-napari")
    results["first open (creates the project)"] = (run_until(app, lambda: idle(widget), start), probe.stop())
    viewer.close()
    add_labels(Project.open(folder / "maskclip-project"))

    reopen = []
    for _ in range(REPEATS):  # a new viewer each time (the first layers cost most)
        viewer = napari.Viewer(show=True)
        widget = dock_annotator(viewer)
        run_until(app, lambda: widget.layers_prepared, time.perf_counter())
        probe.start()
        start = time.perf_counter()
        viewer.open(str(folder), plugin="maskclip-napari")
        reopen.append((run_until(app, lambda: idle(widget), start), probe.stop()))
        if len(reopen) < REPEATS:
            viewer.close()
    results[f"reopen (labels stored; median of {REPEATS})"] = tuple(np.median(reopen, axis=0))

    stalls, times = [], []
    for _ in range(len(widget.project)):
        ids = widget.project.image_ids
        target = ids[(ids.index(widget.current_id) + 1) % len(ids)]
        probe.start()
        start = time.perf_counter()
        widget.next_button.click()
        times.append(run_until(app, lambda: idle(widget) and widget.current_id == target, start))
        stalls.append(probe.stop())
    results["Next ▶ (median over the images)"] = (float(np.median(times)), float(np.median(stalls)))
    results["Next ▶ (worst of all images)"] = (max(times), max(stalls))

    # a stroke, then Next: the edit is saved (a labels PNG of the image's size) while the next image shows
    stalls, times = [], []
    for _ in range(len(widget.project)):
        ids = widget.project.image_ids
        target = ids[(ids.index(widget.current_id) + 1) % len(ids)]
        layer = widget.labels_layer
        layer.brush_size = 40
        layer.paint((layer.data.shape[0] // 2, layer.data.shape[1] // 2), 2)
        probe.start()
        start = time.perf_counter()
        widget.next_button.click()
        times.append(run_until(app, lambda: idle(widget) and widget.current_id == target
                               and not widget.has_unsaved_edits, start))
        stalls.append(probe.stop())
    results["stroke, then Next ▶ (worst; saves the edit)"] = (max(times), max(stalls))

    # the floor: one repaint of the unchanged window (Qt widgets and the napari canvas, software OpenGL
    # under Xvfb): any visible change costs at least this
    window = viewer.window._qt_window
    floor = []
    for _ in range(5):
        probe.start()
        start = time.perf_counter()
        window.update()
        viewer.window._qt_viewer.canvas.native.update()
        run_until(app, lambda: True, start)
        floor.append(probe.stop())
    results["repaint only (no change; the floor)"] = (0.0, sorted(floor)[len(floor) // 2])
    viewer.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="CamVid images in the small set")
    parser.add_argument("--large", type=int, default=3, help="12-Mpx images in the large set")
    args = parser.parse_args()
    if not CAMVID.is_dir():
        print(f"shared data not found: {CAMVID}", file=sys.stderr)
        return 1
    import napari
    from qtpy.QtWidgets import QApplication

    from maskclip_napari._dock import ensure_registered

    ensure_registered()
    app = QApplication.instance() or QApplication([])
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-stalls-") as tmp:
        sets = [(f"{args.images} x 480x360", args.images, None, 0.100),
                (f"{args.large} x 4000x3000 (12 Mpx)", args.large, (4000, 3000), 0.250)]
        for name, count, size, target in sets:
            folder = Path(tmp) / name.split()[0] / "images"
            make_images(folder, count, size)
            for step, (seconds, stall) in measure(folder, app, napari).items():
                if step.startswith("start-up"):  # napari's and the plugin's start: not what the target is about
                    goal = "none (start-up)"
                else:
                    goal = f"{target * 1000:.0f} ms ({'ok' if stall <= target else 'OVER'})"
                rows.append((name, step, seconds, stall, goal))
                print(f"{name:<24} {step:<44} done in {seconds * 1000:6.0f} ms, longest stall "
                      f"{stall * 1000:5.0f} ms, target {goal}", flush=True)
    load = os.getloadavg()[0]
    lines = [f"{machine_line()}; napari under Xvfb, no model loaded, every image with stored labels. Stall = the "
             f"longest gap between ticks of a {TICK_MS} ms QTimer beyond its interval (the GUI cannot repaint or "
             "take input meanwhile; it includes napari's own drawing and layer building, see the repaint-only floor). "
             "Targets (issue 10): 100 ms on 480x360, 250 ms on 12 Mpx. Before issue 10 (commit 0f98ca1, all reads "
             "on the GUI thread; same script, same machine, run just before): longest stall on first open "
             "3.8 s / 1.8 s, reopen 1.7 s / 1.9 s, Next median 130 ms / 290 ms, worst 150 ms / 560 ms "
             "(480x360 / 12 Mpx). Since then the annotator makes its (empty, hidden) image and labels layers "
             "while napari starts, one per event-loop turn, after napari's one-time layer imports ran in a "
             "thread (a new napari layer costs ~0.1 s of GUI time here, the first of a process ~0.7 s); the "
             "image name moved from a canvas text overlay (its first glyphs cost ~0.4 s) to the window title; "
             "label saves and stored predictions are written in background threads (a 12-Mpx labels PNG "
             "takes ~0.5 s). The start-up rows time docking the annotator and opening at once, as "
             "`python -m maskclip_napari FOLDER` does (the first includes the plugin's import and napari's "
             f"first layers of the process). Load average at the end of the run: {load:.1f} on 2 cores.",
             "",
             "| images | action | done in | longest stall | target |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {step} | {seconds * 1000:.0f} ms | {stall * 1000:.0f} ms | {goal} |"
              for name, step, seconds, stall, goal in rows]
    write_section(HEADING, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
