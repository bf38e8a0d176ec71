"""Learning from verified pixels through the project path: text only, the class-mean prototypes, the
text-prior learner (maskclip.learner, the default) and an ilastik-style baseline, on the same verified pixels.

Teaching images are stored in a `Project` (fully verified: class pixels with their class, the rest
confirmed background, verified 255), and the learner is the one `project segment --learn-from-verified`
builds (`maskclip.learner.project_learner` from the project's "learn" settings), synced from that project.
Held-out images are then segmented with it (mIoU, maskclip.metrics). 1 and 5 teaching images are drawn
`--draws` times and averaged; 20 once.

* toy: the project's toy CLIP (../shared/models or `python -m maskclip.toy_clip`), held-out synthetic
  scenes, every dense mode with its own KS/PD defaults; with two variants of the learner: full trust (no
  cross-validation) and pixel-level features chosen by cross-validation (`pixel_features="auto"`). Also: the pull of the learner
  (`--pulls`) and PAMR on the learned scores.
* camvid: ViT-B-16 with random weights (the text means nothing), 30 val images at short side 336, dense
  mode maskclip at its defaults; teaching images from train.

The ilastik-style baseline is scikit-image's "trainable segmentation" recipe: per-pixel
`skimage.feature.multiscale_basic_features` (intensity, edges, texture; sigma 1-16) and a scikit-learn
random forest (100 trees, depth 10, at most 100k training pixels) on the same verified pixels, confirmed
background as a class of its own.

    OMP_NUM_THREADS=1 python bench/bench_learner.py --write [--dataset toy camvid]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import machine_line, timed, write_section  # noqa: E402

import maskclip  # noqa: E402
from maskclip import toy_clip  # noqa: E402
from maskclip.images import read_image  # noqa: E402
from maskclip.labels_io import read_classes_json, read_label_image  # noqa: E402
from maskclip.learner import ProjectLearner, project_learner  # noqa: E402
from maskclip.metrics import confusion_matrix, scores_from_confusion  # noqa: E402
from maskclip.options import DENSE_MODE_NAMES  # noqa: E402
from maskclip.project import Project  # noqa: E402
from maskclip.settings import learn_spec  # noqa: E402

CAMVID = ROOT / ".." / "shared" / "data" / "camvid"
HEADINGS = {"toy": "## Learning from verified pixels through the project: toy CLIP (bench/bench_learner.py)",
            "camvid": "## Learning from verified pixels through the project: CamVid, random ViT-B-16 "
                      "(bench/bench_learner.py)"}
COUNTS = (1, 5, 20)


def table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


# --- the project path ------------------------------------------------------------------------------
def teaching_project(root: Path, items, class_names, background_label: int | None) -> Project:
    """A project holding `items` (image, ground truth) fully verified; the ground truth's background label
    (and void, 255) become confirmed background (verified 255), as an annotator's *Reviewed* leaves it."""
    from PIL import Image

    folder = root / "src"
    folder.mkdir(parents=True)
    paths = []
    for i, (image, _gt) in enumerate(items):
        paths.append(folder / f"img{i:03d}.png")
        Image.fromarray(image).save(paths[-1])
    project = Project.create(root / "project", paths, classes=class_names)
    for image_id, (_image, gt) in zip(project.image_ids, items):
        labels = gt.copy()
        if background_label is not None:
            labels[gt == background_label] = 255
        project.set_labels(image_id, labels.astype(np.uint8), np.ones(gt.shape, bool))
    return project


def learned_term(model, project, options, kind: str, **ablation):
    """What `project segment --learn-from-verified [--learner KIND]` segments with; `ablation`: keyword
    arguments of `ProjectLearner` that differ from the defaults (pull, cross_validate, pixel_features)."""
    learn = learn_spec({**project.settings, "learn": {"from_verified": True}}, learner=kind)
    if ablation and kind == "text-prior":
        learner = ProjectLearner(options["scales"], options.get("window"), options.get("stride"), **ablation)
    else:
        learner = project_learner(learn["learner"], options)
    learner.sync(model, project)
    return learner.term(learn["weight"])


LEARNER_ROWS = (("prototypes", "prototypes (w=0.5)", {}),
                ("text-prior", "**text-prior learner** (default)", {}),
                ("text-prior", "learner, full trust (no cross-validation)", {"cross_validate": False}),
                ("text-prior", "learner + pixel-level features (auto)", {"pixel_features": "auto"}))


def miou(model, items, classes, options, num_classes, learned=None, **extra) -> float:
    cm = 0
    for image, gt in items:
        seg = model.segment(image, classes, learned=learned, **options, **extra)
        cm = cm + confusion_matrix(gt, seg.labels, num_classes)
    return scores_from_confusion(cm, [str(i) for i in range(num_classes)])["mIoU"]


# --- the ilastik-style baseline ------------------------------------------------------------------
def pixel_features(image: np.ndarray) -> np.ndarray:
    from skimage.feature import multiscale_basic_features

    return multiscale_basic_features(image, channel_axis=-1, sigma_min=1, sigma_max=16).astype(np.float32)


class IlastikBaseline:
    def __init__(self, items, seed=0, max_pixels=100_000):
        from sklearn.ensemble import RandomForestClassifier

        xs, ys = [], []
        for image, gt in items:
            f = pixel_features(image)
            xs.append(f.reshape(-1, f.shape[-1]))
            ys.append(gt.reshape(-1))
        x, y = np.concatenate(xs), np.concatenate(ys)
        keep = y != 255
        x, y = x[keep], y[keep]
        rng = np.random.default_rng(seed)
        if len(y) > max_pixels:
            pick = rng.choice(len(y), max_pixels, replace=False)
            x, y = x[pick], y[pick]
        self.forest = RandomForestClassifier(n_estimators=100, max_depth=10, n_jobs=1, random_state=seed).fit(x, y)

    def predict(self, image):
        f = pixel_features(image)
        return self.forest.predict(f.reshape(-1, f.shape[-1])).reshape(image.shape[:2])


RF_CACHE = Path(tempfile.gettempdir()) / "maskclip_bench_learner_rf.json"  # reruns skip the forests


def cached_baseline(key: str, items, eval_items, num_classes, seed: int) -> float:
    import json

    cache = json.loads(RF_CACHE.read_text()) if RF_CACHE.exists() else {}
    if key not in cache:
        cache[key] = baseline_miou(IlastikBaseline(items, seed=seed), eval_items, num_classes)
        RF_CACHE.write_text(json.dumps(cache))
    return cache[key]


def baseline_miou(baseline, items, num_classes) -> float:
    cm = 0
    for image, gt in items:
        cm = cm + confusion_matrix(gt, baseline.predict(image), num_classes)
    return scores_from_confusion(cm, [str(i) for i in range(num_classes)])["mIoU"]


def draws_of(pool, count, draws, rng):
    repeats = 1 if count >= len(pool) or count >= 20 else draws
    return [[pool[i] for i in rng.choice(len(pool), count, replace=False)] for _ in range(repeats)]


def fmt(values) -> str:
    return f"{statistics.mean(values):.3f}" + (f" ±{statistics.stdev(values):.3f}" if len(values) > 1 else "")


# --- toy ---------------------------------------------------------------------------------------------
def toy_section(args, tmp: Path) -> str:
    path = Path(args.toy_checkpoint) if args.toy_checkpoint else toy_clip.find_checkpoint()
    if path is None or not path.is_file():
        return "toy model not found: set MASKCLIP_TOY_CLIP_DIR=../shared/models or build it"
    scenes = toy_clip.held_out_scenes(args.toy_eval + 100)
    eval_items = [(s.image, s.labels) for s in scenes[:args.toy_eval]]
    pool = [(s.image, s.labels) for s in scenes[args.toy_eval:]]
    classes = toy_clip.CLASS_NAMES
    options = {"scales": (toy_clip.IMAGE_SIZE,), "background": list(toy_clip.BACKGROUND_PROMPTS)}
    n = toy_clip.NUM_LABELS
    rng = np.random.default_rng(0)
    teaching = {c: draws_of(pool, c, args.draws, rng) for c in COUNTS}
    projects = {}
    for c, sets in teaching.items():
        for d, items in enumerate(sets):
            projects[c, d] = teaching_project(tmp / f"toy-{c}-{d}", items, classes, toy_clip.BACKGROUND_LABEL)
    base = {c: [cached_baseline(f"toy-{args.toy_eval}-{c}-{d}", items, eval_items, n, d)
                for d, items in enumerate(sets)] for c, sets in teaching.items()}
    print("baseline", {c: fmt(v) for c, v in base.items()}, flush=True)

    out = [f"Toy CLIP ({path.name}), {len(eval_items)} held-out scenes, {n} labels; teaching scenes from "
           f"another part of the held-out stream, 1 and 5 scenes: mean ± sd of {args.draws} draws, 20: one draw. "
           "Each dense mode at its own defaults (KS/PD, temperature). Through the project path: the teaching "
           "scenes fully verified in a Project (background pixels = confirmed background, verified 255), the "
           "learner built and synced as `project segment --learn-from-verified` does. mIoU:", ""]
    header = ["dense mode", "learner"] + [f"{c} verified" for c in COUNTS]
    rows = []
    for mode in args.modes:
        model = maskclip.load(toy_clip.MODEL_NAME, pretrained=path, device="cpu", dense_mode=mode)
        text = miou(model, eval_items, classes, options, n)
        rows.append([mode, "text only", *[f"{text:.3f}"] * len(COUNTS)])
        for kind, label, ablation in LEARNER_ROWS:
            cells = [mode, label]
            for c, sets in teaching.items():
                cells.append(fmt([miou(model, eval_items, classes, options, n,
                                       learned_term(model, projects[c, d], options, kind, **ablation))
                                  for d in range(len(sets))]))
            rows.append(cells)
            print(rows[-1], flush=True)
        rows.append([mode, "ilastik-style (RF)", *[fmt(base[c]) for c in COUNTS]])
    out += [table(header, rows), ""]

    if args.pulls:
        model = maskclip.load(toy_clip.MODEL_NAME, pretrained=path, device="cpu", dense_mode=args.pull_mode)
        rows = []
        for pull in args.pulls:
            cells = [f"{pull:g}"]
            for c, sets in teaching.items():
                cells.append(fmt([miou(model, eval_items, classes, options, n,
                                       learned_term(model, projects[c, d], options, "text-prior", pull=pull))
                                  for d in range(len(sets))]))
            rows.append(cells)
            print(rows[-1], flush=True)
        out += [f"The pull toward the text (dense mode {args.pull_mode}, its defaults), mIoU:", "",
                table(["pull"] + [f"{c} verified" for c in COUNTS], rows), ""]
    if args.pamr:
        model = maskclip.load(toy_clip.MODEL_NAME, pretrained=path, device="cpu", dense_mode=args.pull_mode)
        rows = []
        for pamr in (False, True):
            cells = ["PAMR (10 steps, dilations 1, 2)" if pamr else "bilinear"]
            extra = {"pamr": True, "pamr_dilations": (1, 2)} if pamr else {}
            cells.append(f"{miou(model, eval_items, classes, options, n, **extra):.3f}")
            for c, sets in teaching.items():
                cells.append(fmt([miou(model, eval_items, classes, options, n,
                                       learned_term(model, projects[c, d], options, "text-prior"), **extra)
                                  for d in range(len(sets))]))
            rows.append(cells)
            print(rows[-1], flush=True)
        out += [f"Pixel-level detail (dense mode {args.pull_mode}): PAMR on the learned scores, mIoU:", "",
                table(["upsampling", "text only"] + [f"{c} verified" for c in COUNTS], rows), ""]
    return "\n".join(out)


# --- camvid ------------------------------------------------------------------------------------------
def camvid_section(args, tmp: Path) -> str:
    if not CAMVID.is_dir():
        return f"CamVid not found at {CAMVID}: skipped"
    classes = list(read_classes_json(CAMVID / "classes.json")["classes"])

    def items(split, limit):
        paths = sorted((CAMVID / split / "images").glob("*.jpg"))[:limit]
        return [(read_image(p), read_label_image(CAMVID / split / "labels" / f"{p.stem}.png")) for p in paths]

    torch.manual_seed(0)
    model = maskclip.load("ViT-B-16", pretrained=None, device="cpu", dense_mode="maskclip")
    eval_items, pool = items("val", args.camvid_eval), items("train", args.camvid_pool)
    options = {"scales": (args.camvid_scale,), "background": []}
    n = len(classes)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    text = miou(model, eval_items, classes, options, n)
    rows = [["text only", *[f"{text:.3f}"] * len(COUNTS)]]
    print(rows[-1], f"{time.perf_counter() - start:.0f}s", flush=True)
    learners = {label: (kind, ablation) for kind, label, ablation in LEARNER_ROWS
                if "no cross-validation" not in label}
    cells = {k: ["x"] for k in (*learners, "rf")}
    for c in COUNTS:
        sets = draws_of(pool, c, args.camvid_draws, rng)
        scores = {k: [] for k in cells}
        for d, chosen in enumerate(sets):
            project = teaching_project(tmp / f"camvid-{c}-{d}", chosen, classes, None)
            for label, (kind, ablation) in learners.items():
                scores[label].append(miou(model, eval_items, classes, options, n,
                                          learned_term(model, project, options, kind, **ablation)))
            scores["rf"].append(cached_baseline(f"camvid-{args.camvid_eval}-{args.camvid_scale}-{c}-{d}", chosen,
                                                eval_items, n, d))
            print(c, d, {k: round(v[-1], 3) for k, v in scores.items()}, f"{time.perf_counter() - start:.0f}s", flush=True)
        for k in cells:
            cells[k].append(fmt(scores[k]))
    rows += [[label, *cells[label][1:]] for label in learners] + [["ilastik-style (RF)", *cells["rf"][1:]]]
    timing = stroke_timing(model, eval_items[0][0], classes, options, tmp, pool[:5])
    return "\n".join([
        f"CamVid val, first {len(eval_items)} images at short side {args.camvid_scale}, {n} classes (void "
        f"ignored), ViT-B-16 with random weights (the text means nothing: this is the learner alone), dense mode "
        f"maskclip at its defaults; teaching images from the first {len(pool)} of train, 1 and 5: mean ± sd of "
        f"{args.camvid_draws} draws. "
        "Through the project path as above. mIoU:", "",
        table(["learner"] + [f"{c} verified images" for c in COUNTS], rows), "", timing])


def stroke_timing(model, image, classes, options, tmp, teach_items) -> str:
    """Features in memory: the update after a stroke (one image re-read), the fit, and the redraw."""
    project = teaching_project(tmp / "timing", teach_items, classes, None)
    learner = project_learner("text-prior", options)
    learner.sync(model, project)
    image_id = project.image_ids[0]
    update = timed(lambda: learner.update_image(model, project, image_id), 5)

    def fit():
        learner.samples.version += 1  # a stroke changed something: refit
        learner.fit(model, classes, options["background"])

    fits = timed(fit, 3)
    term = learner.term()
    model.segment(image, classes, learned=term, **options)
    plain = timed(lambda: model.segment(image, classes, **options), 5)
    learned = timed(lambda: model.segment(image, classes, learned=term, **options), 5)
    ms = lambda t: f"{1000 * min(t):.0f} ms"  # noqa: E731
    n = sum(len(m.index) for m in learner.samples.snapshot()[2])
    return (f"Timing ({image.shape[1]}x{image.shape[0]}, features in memory, best of 5, one torch thread): re-read "
            f"one image's verified pixels {ms(update)}; fit ({n} verified patches, 5 images) {ms(fits)}; "
            f"redraw {ms(plain)} text only, {ms(learned)} with the fitted learner.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", nargs="+", default=["toy", "camvid"], choices=("toy", "camvid"))
    ap.add_argument("--modes", nargs="+", default=list(DENSE_MODE_NAMES))
    ap.add_argument("--toy-checkpoint")
    ap.add_argument("--toy-eval", type=int, default=40)
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--pulls", type=float, nargs="*", default=[])
    ap.add_argument("--pull-mode", default="maskclip")
    ap.add_argument("--pamr", action="store_true")
    ap.add_argument("--camvid-eval", type=int, default=30)
    ap.add_argument("--camvid-scale", type=int, default=336)
    ap.add_argument("--camvid-draws", type=int, default=3)
    ap.add_argument("--camvid-pool", type=int, default=40, help="teaching images: drawn from the first N of train")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.dataset:
            start = time.perf_counter()
            body = (toy_section if name == "toy" else camvid_section)(args, Path(tmp))
            body = "\n".join([machine_line() + f"; {args.threads} torch thread(s), the 2 cores shared with other "
                              f"jobs; {time.perf_counter() - start:.0f} s", "", body])
            print(f"{name}:\n{body}", flush=True)
            if args.write:
                write_section(HEADINGS[name], body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
