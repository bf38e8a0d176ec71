"""How long the annotator's KS / PD / threshold redraw takes in a real napari viewer (issue 4, item 4).

A redraw is what runs on the GUI thread after a toggle once the image's features and the prompts are
cached: MaskCLIP's cheap part (scores, PD, KS, upsampling), merging the prediction into the project (one
atomic revision on disk) and updating the labels layer plus one confidence layer per class.

Run under a display (Xvfb):  xvfb-run -a .venv/bin/python bench/bench_reprompt_gui.py [--model ViT-B-16]
Writes bench/out/reprompt_gui.json and the "Annotator redraw" section of bench/results.md. Random weights:
timings do not depend on the weights' values.

--stroke instead times learning from corrections live (issue 19, item 3) on CamVid 480x360 images and the
same upscaled to 4000x3000 (12 Mpx): with 'Learn from corrections' on, a brush stroke is saved; a job's
worker re-reads the image's verified pixels, fits the text-prior learner and redraws; then KS toggles redraw
with the fitted learner from cached features (on the GUI thread where the image is small enough). GUI
stalls are timed as in bench_annotator_stalls.py. Writes the "Annotator: stroke -> learned redraw" section.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_annotator_stalls import CAMVID, TICK_MS, StallProbe, make_images, run_until  # noqa: E402
from results_file import machine_line, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["road", "car", "tree", "sky", "building", "person", "bicycle", "sign", "pole", "fence",
           "grass", "water", "dog", "cat", "boat", "bird", "chair", "table", "bus", "train"]


STROKE_HEADING = "## Annotator: stroke -> learned redraw (bench/bench_reprompt_gui.py --stroke)"
LEARN_CLASSES = ["road", "car", "tree", "sky", "building", "person", "sign", "fence"]
STROKES = 5


class FitTimer:
    """Times every fit of the text-prior learner (`maskclip.learner.fit_residual`) and where it ran."""

    def __init__(self):
        import threading

        from maskclip import learner

        self.seconds, self.on_gui_thread = [], 0
        fit = learner.fit_residual

        def timed_fit(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fit(*args, **kwargs)
            finally:
                self.seconds.append(time.perf_counter() - start)
                self.on_gui_thread += threading.current_thread() is threading.main_thread()

        learner.fit_residual = timed_fit


def measure_learning(folder: Path, app, napari, checkpoint: Path, model: str, fits: FitTimer) -> dict:
    """Strokes with learning from corrections on: stroke saved -> learned labels shown, the fit, the
    longest GUI stall; then KS toggles redrawn with the fitted learner."""
    from maskclip_napari._dock import dock_annotator

    probe = StallProbe()
    viewer = napari.Viewer(show=True)
    widget = dock_annotator(viewer)
    viewer.open(str(folder), plugin="maskclip-napari")
    run_until(app, lambda: widget.current_id is not None and not getattr(widget, "loading", False), time.perf_counter())
    widget.project.set_classes(LEARN_CLASSES)
    widget.show_classes()
    widget.set_model_choice(model, str(checkpoint), "cpu")
    widget.learn_check.setChecked(True)
    widget.segment_current()
    run_until(app, lambda: not widget.busy and widget.segmentation is not None, time.perf_counter(), 600)

    layer = widget.labels_layer
    height, width = layer.data.shape
    layer.brush_size = max(9, min(height, width) // 30)
    totals, stalls, fit_counts = [], [], []
    for k in range(STROKES):  # horizontal strokes of different classes across the image
        row = int(height * (k + 1) / (STROKES + 1))
        for col in np.linspace(0, width - 1, 40):
            layer.paint((row, col), 1 + k % len(LEARN_CLASSES), refresh=False)
        layer.refresh()
        before, fitted = widget.segmentation, len(fits.seconds)
        probe.start()
        start = time.perf_counter()
        widget.save_current()
        totals.append(run_until(app, lambda: widget.segmentation is not before and not widget.busy
                                and not widget.has_unsaved_edits, start))
        stalls.append(probe.stop())
        fit_counts.append(len(fits.seconds) - fitted)
    stroke_fits = fits.seconds[-sum(fit_counts):] if sum(fit_counts) else [float("nan")]

    toggles, toggle_stalls, refits, gui_thread = [], [], 0, True
    for _ in range(STROKES):  # redraws with the fitted learner
        before, fitted, count = widget.segmentation, len(fits.seconds), widget.redraw_count
        probe.start()
        start = time.perf_counter()
        widget.ks_check.setChecked(not widget.ks_check.isChecked())
        widget._redraw_timer.stop()  # skip the debounce: time the redraw itself
        widget._on_method_changed()
        total = run_until(app, lambda: widget.segmentation is not before and not widget.busy, start)
        stall = probe.stop()
        if widget.redraw_count > count:  # on the GUI thread: the annotator's own timing of it (as above)
            toggles.append(widget.last_redraw_s)
            toggle_stalls.append(widget.last_redraw_blocking_s)
        else:  # a job: from the toggle to the labels shown, and the longest GUI stall meanwhile
            gui_thread = False
            toggles.append(total)
            toggle_stalls.append(stall)
        refits += len(fits.seconds) - fitted
    engine = []
    for _ in range(3):
        start = time.perf_counter()
        widget.session.segment(widget.image, widget.method())
        engine.append(time.perf_counter() - start)
    viewer.close()
    return {"stroke": (float(np.median(totals)), max(totals), max(stalls)),
            "fit": (float(np.median(stroke_fits)), max(stroke_fits)),
            "redraw": (float(np.median(toggles)), max(toggles), max(toggle_stalls), gui_thread),
            "engine": float(np.median(engine)), "refits": refits}


def stroke_main(args, app, napari) -> int:
    import torch

    import maskclip

    if not CAMVID.is_dir():
        print(f"shared data not found: {CAMVID}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    fits = FitTimer()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-learn-") as tmp:
        checkpoint = Path(tmp) / "weights.pt"
        torch.manual_seed(0)
        maskclip.load(args.model, pretrained=None, device="cpu").save_checkpoint(checkpoint)
        for name, size in (("480x360", None), ("4000x3000 (12 Mpx)", (4000, 3000))):
            folder = Path(tmp) / name.split()[0] / "images"
            make_images(folder, 2, size)
            r = measure_learning(folder, app, napari, checkpoint, args.model, fits)
            rows.append((name, r))
            print(name, r, flush=True)
    assert fits.on_gui_thread == 0, "the learner was fitted on the GUI thread"
    load = os.getloadavg()[0]
    lines = [f"{machine_line()}; 1 torch thread; napari under Xvfb; {args.model} with random weights (timings do "
             f"not depend on their values) on the CPU, short side 336, {len(LEARN_CLASSES)} classes + the default "
             f"background prompts, 'Learn from corrections' on (the text-prior learner, `maskclip.learner`). "
             f"{STROKES} strokes of different classes across the image, each saved; the annotator then runs one job: "
             "its worker re-reads the image's verified pixels (features cached), fits the learner and redraws, "
             f"and the labels show (the {120} ms redraw debounce included). Then {STROKES} KS toggles redraw with the "
             "fitted learner. Fits on the GUI thread: "
             f"{fits.on_gui_thread}. Stall = longest gap of a {TICK_MS} ms GUI timer beyond its interval. The "
             f"machine was shared with other jobs (load average {load:.1f} on 2 cores at the end).", "",
             "| image | stroke saved -> learned labels shown (median / max) | learner fit in the worker (median / "
             "max) | longest GUI stall during it | redraw with the fitted learner (median / max; where) | longest "
             "event-loop turn (GUI thread) or GUI stall (job) during it | refits during the redraws | engine only, fitted learner, cached features |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows:
        (t_med, t_max, t_stall), (f_med, f_max) = r["stroke"], r["fit"]
        d_med, d_max, d_stall, gui = r["redraw"]
        lines.append(f"| {name} | {t_med * 1000:.0f} / {t_max * 1000:.0f} ms | {f_med * 1000:.0f} / "
                     f"{f_max * 1000:.0f} ms | {t_stall * 1000:.0f} ms | {d_med * 1000:.0f} / {d_max * 1000:.0f} ms "
                     f"({'GUI thread' if gui else 'worker'}) | {d_stall * 1000:.0f} ms | {r['refits']} | "
                     f"{r['engine'] * 1000:.0f} ms |")
    lines += ["", "Target (issue 19, item 3): the redraw of the current image with the fitted learner under 100 ms at "
              "480x360 with cached features; the fit never on the GUI thread. At 12 Mpx the redraw is over the "
              "annotator's GUI-thread budget (`_session.GUI_THREAD_REDRAW_VALUES`) and runs in the worker. A redraw "
              "that runs as a job re-reads the image's verified pixels first when its label revision changed (the "
              "previous job stored its prediction there; `maskclip.verified_sync` keys on the revision), which "
              "refits the learner in that worker: the refits column counts them."]
    write_section(STROKE_HEADING, "\n".join(lines))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stroke", action="store_true", help="time stroke -> learned redraw (see above)")
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--size", type=int, default=512, help="image side (square)")
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "reprompt_gui.json")
    args = parser.parse_args()

    from maskclip_napari._torch_env import import_torch_stack

    import_torch_stack()  # torch + torchvision without triton, before napari's GL context (see _torch_env)
    import torch
    if args.stroke:
        import napari
        from qtpy.QtWidgets import QApplication

        from maskclip_napari._dock import ensure_registered

        ensure_registered()
        return stroke_main(args, QApplication.instance() or QApplication([]), napari)

    import maskclip
    if args.threads:
        torch.set_num_threads(args.threads)
    import napari
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    from maskclip_napari._dock import dock_annotator

    tmp = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    images = tmp / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        # smooth random colour fields: a stand-in photo of the requested size
        small = rng.integers(0, 255, (args.size // 32, args.size // 32, 3), dtype=np.uint8)
        Image.fromarray(small).resize((args.size, args.size), Image.BICUBIC).save(images / f"img{i}.png")
    checkpoint = tmp / "weights.pt"
    torch.manual_seed(0)
    maskclip.load(args.model, pretrained=None, device="cpu").save_checkpoint(checkpoint)

    viewer = napari.Viewer(show=True)
    widget = dock_annotator(viewer)
    widget.open_path(images)
    widget.project.set_classes(CLASSES[: args.classes])
    widget.show_classes()
    widget.set_model_choice(args.model, str(checkpoint), "cpu")
    app = QApplication.instance()

    def wait_idle():
        while widget.busy:
            app.processEvents()
            time.sleep(0.01)

    start = time.perf_counter()
    widget.segment_current()
    wait_idle()
    first = time.perf_counter() - start
    runs = widget.session.model.stats["image_encoder_runs"]

    if not widget.session.is_cheap(widget.image, widget.method()):
        sys.exit(f"{args.size}x{args.size} with {args.classes} classes is over the annotator's GUI-thread redraw "
                 "budget (maskclip_napari._session.GUI_THREAD_REDRAW_VALUES): its redraws run in the worker, "
                 "which this benchmark does not time")
    toggles, blocking = [], []
    for i in range(args.repeats):
        for set_value in (lambda: widget.ks_check.setChecked(not widget.ks_check.isChecked()),
                          lambda: widget.pd_check.setChecked(not widget.pd_check.isChecked()),
                          lambda: widget.pd_slider.setValue(0.3 + 0.05 * (i % 8))):
            set_value()
            widget._redraw_timer.stop()  # skip the debounce: time the redraw itself
            count = widget.redraw_count
            widget._on_method_changed()
            while widget.redraw_count == count:
                app.processEvents()
            toggles.append(widget.last_redraw_s)
            blocking.append(widget.last_redraw_blocking_s)
    assert widget.session.model.stats["image_encoder_runs"] == runs, "a toggle re-encoded the image"

    # the engine's share, without project write and layer updates
    method = widget.method()
    engine = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        widget.session.segment(widget.image, method)
        engine.append(time.perf_counter() - t0)

    result = {
        "model": args.model, "image": [args.size, args.size], "classes": args.classes,
        "threads": torch.get_num_threads(), "platform": platform.platform(), "python": sys.version.split()[0],
        "first_segmentation_s (load + encode, worker)": round(first, 3),
        "redraw_ms_median (GUI thread: engine + project save + layers)": round(1000 * statistics.median(toggles), 1),
        "redraw_ms_max": round(1000 * max(toggles), 1),
        "event_loop_blocked_ms_median (longest single turn)": round(1000 * statistics.median(blocking), 1),
        "event_loop_blocked_ms_max": round(1000 * max(blocking), 1),
        "engine_ms_median (segment from cached features)": round(1000 * statistics.median(engine), 1),
        "redraws": len(toggles),
        "image_encoder_runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    write_section("## Annotator redraw (bench/bench_reprompt_gui.py)", "\n".join([
        f"{machine_line()}; {torch.get_num_threads()} torch threads. {args.model}, random weights, CPU, "
        f"{args.size}x{args.size} image, {args.classes} classes + background prompts, features and prompts cached; "
        f"{len(toggles)} redraws (KS, PD and threshold changes) in a real napari viewer under Xvfb.", "",
        "| | median | max |", "|---|---|---|",
        f"| redraw on the GUI thread (engine + atomic project save + labels and {args.classes} confidence layers) | "
        f"{1000 * statistics.median(toggles):.0f} ms | {1000 * max(toggles):.0f} ms |",
        f"| longest single event-loop turn during a redraw | {1000 * statistics.median(blocking):.0f} ms | "
        f"{1000 * max(blocking):.0f} ms |",
        f"| engine only (segment from cached features) | {1000 * statistics.median(engine):.0f} ms | "
        f"{1000 * max(engine):.0f} ms |", "",
        f"Target (issue 4): a toggle redraws in under 100 ms without re-encoding the image (encoder runs during "
        f"the redraws: {widget.session.model.stats['image_encoder_runs'] - runs}). First segmentation "
        f"(model load + encoding, in the worker): {first:.1f} s."]))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
