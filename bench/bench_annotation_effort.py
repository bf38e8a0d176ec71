"""Annotation effort: how much hand work a simulated annotator needs to bring a dataset's labels to a given
quality, per level of assistance.

The simulator (`simulate`) opens a project (`maskclip.Project`) of images whose ground truth it alone knows
and works through the images in an order fixed by its seed, one at a time, as a person does:

1. it looks at the image's current labels, finds the largest wrong connected region (4-connected pixels of
   one ground-truth class whose label is not that class; unlabelled counts as wrong, ground-truth 255 is
   ignored) and paints one brush stroke of the region's class into it: a horizontal drag of a round brush of
   `radius` pixels along the longest run of the region on one of the rows a person sweeping the region would
   take (rows 2*radius+1 apart, starting `radius` below its top). The brush paints only inside the wrong
   region (an annotator careful at its edges), so every painted pixel changes label;
2. the stroke is saved through `Project.set_labels` with the annotator's verified mask (old | changed), so
   painted pixels become verified, exactly as the napari annotator saves a stroke;
3. the tool reacts to the stroke (`Assistant.after_stroke`), and the labels of the image are read again;
4. once no more than `tolerance` of the image's (non-ignored) pixels are wrong, the image is marked
   *Reviewed* (`Project.set_verified` of the whole image, as the annotator's Reviewed button does) and the
   tool reacts to the finished image (`Assistant.after_image`, one "round"); the next image follows.

Counted: strokes and painted pixels; after every stroke the dataset mIoU of all images against the ground
truth (maskclip.metrics, one confusion matrix summed over the images), and per round the wall time of the
tool's own work (the assistant's hooks; the simulator's own bookkeeping and saving the strokes are not
counted). Deterministic for a seed (the image order; the random forest and the student take it too).

Assistance levels (the same simulator each time):
  a  none: painting from empty labels;
  b  MaskCLIP text-only labels of every image at the start (what `maskclip project segment` stores: the
     model's segmentation merged with `Project.merge_prediction`), then corrections;
  c  b + learning from corrections (`maskclip.prototypes.ProjectPrototypes`, the project's default weight
     0.5): after each stroke the current image's verified pixels are learned and the image is redrawn (the
     annotator's live redraw), after each reviewed image every image not yet reviewed is redrawn;
  d  c + MaskCLIP+: every `--train-every` reviewed images `maskclip train` (a small number of iterations on
     the CPU, the default student: `auto`, on a CPU the clip student) and `maskclip refine` run as child
     processes (the CLI, as the annotator runs them). Refined labels are not overwritten by MaskCLIP
     redraws: the learned-term redraws touch only images whose labels still come from MaskCLIP;
  e  ilastik-style baseline: scikit-image `multiscale_basic_features` per pixel and a scikit-learn random
     forest trained on all verified pixels (up to --rf-samples of them), retrained after each reviewed image
     and predicting the images not yet reviewed (no live retraining within an image).

Datasets: `toy` (the toy CLIP's held-out scenes: 64x64, 12 shape classes + background, real semantics) and
`camvid` (CamVid val images, downscaled, ViT-B-16 with random weights: the text knows nothing, so only the
learned and pixel parts can help).

    .venv/bin/python bench/bench_annotation_effort.py --write [--dataset toy camvid] [--levels a b c d e]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from maskclip.metrics import confusion_matrix, scores_from_confusion  # noqa: E402
from maskclip.project import Project  # noqa: E402

CAMVID = ROOT / ".." / "shared" / "data" / "camvid"
DOCS = ROOT / "docs"
TARGETS = (0.80, 0.90, 0.95)
LEVEL_NAMES = {"a": "(a) no assistance", "b": "(b) MaskCLIP text + corrections",
               "c": "(c) + learning from corrections", "d": "(d) + MaskCLIP+ train/refine",
               "e": "(e) ilastik-style random forest"}
UNLABELLED = 255


# --- the annotator's brush ----------------------------------------------------------------------------
def disc_offsets(radius: int) -> list[tuple[int, int]]:
    """(dy, half width) of a round brush's rows."""
    return [(dy, int(np.floor(np.sqrt(radius * radius - dy * dy)))) for dy in range(-radius, radius + 1)]


def stroke_rows(ymin: int, ymax: int, radius: int) -> list[int]:
    """Rows a person sweeping a region of these rows takes: `radius` below the top, then every 2r+1 rows,
    and the bottom row when the last sweep does not reach it."""
    step = 2 * radius + 1
    rows = list(range(min(ymin + radius, ymax), ymax + 1, step))
    if rows[-1] + radius < ymax:
        rows.append(ymax)
    return rows


def longest_stroke(region: np.ndarray, radius: int) -> tuple[int, int, int]:
    """(row, x0, x1) of the longest run of `region` on the sweep rows (ties: the upper, then left one).
    The run lies in the region, so a stroke along it paints at least one of its pixels."""
    ys, _ = np.nonzero(region)
    best = None
    for y in stroke_rows(int(ys.min()), int(ys.max()), radius):
        row = np.concatenate([[False], region[y], [False]])
        edges = np.flatnonzero(row[1:] != row[:-1])
        for x0, x1 in zip(edges[::2], edges[1::2] - 1):
            if best is None or x1 - x0 > best[2] - best[1]:
                best = (y, int(x0), int(x1))
    return best


def paint_mask(region: np.ndarray, stroke: tuple[int, int, int], radius: int) -> np.ndarray:
    """Pixels of `region` a round brush of `radius` covers when dragged along the stroke's run."""
    y, x0, x1 = stroke
    h, w = region.shape
    brush = np.zeros_like(region)
    for dy, half in disc_offsets(radius):
        yy = y + dy
        if 0 <= yy < h:
            brush[yy, max(0, x0 - half):min(w, x1 + half + 1)] = True
    return brush & region


def largest_wrong_region(labels: np.ndarray, gt: np.ndarray, num_classes: int) -> tuple[int, np.ndarray] | None:
    """(class, mask) of the largest 4-connected set of wrongly labelled pixels of one ground-truth class;
    None when every pixel is right. Ties: the lower class, then the first component."""
    wrong = (labels != gt) & (gt != UNLABELLED)
    best, best_size = None, 0
    for c in np.unique(gt[wrong]):
        comp, n = ndimage.label(wrong & (gt == c))
        if n == 0:
            continue
        sizes = np.bincount(comp.ravel())[1:]
        k = int(np.argmax(sizes))
        if sizes[k] > best_size:
            best, best_size = (int(c), comp == k + 1), int(sizes[k])
    return best


# --- the tool's reaction --------------------------------------------------------------------------------
class Assistant:
    """Level (a): the tool does nothing. Subclasses label images at the start and react to strokes and to
    reviewed images; each hook returns the ids whose labels it changed (None = possibly all)."""

    name = "a"

    def start(self, project: Project, ids: Sequence[str]) -> list[str] | None:
        return []

    def after_stroke(self, project: Project, image_id: str) -> list[str] | None:
        return []

    def after_image(self, project: Project, done: Sequence[str], todo: Sequence[str]) -> list[str] | None:
        return []


@dataclass
class EffortResult:
    level: str
    images: int
    strokes: int = 0
    painted: int = 0
    curve: list[tuple[int, int, float]] = field(default_factory=list)  # (strokes, painted pixels, mIoU) per stroke
    round_seconds: list[float] = field(default_factory=list)  # the tool's work per reviewed image
    start_seconds: float = 0.0  # the tool's work before the first stroke
    stroke_seconds: float = 0.0  # the tool's reactions to strokes, all rounds
    reviewed: int = 0
    stopped: str = ""  # why the run ended before every image was reviewed ("" = it did not)
    wall_seconds: float = 0.0

    def reached(self, target: float) -> tuple[int, int] | None:
        """(strokes, painted pixels) when the dataset mIoU first reached `target`, or None."""
        for strokes, painted, score in self.curve:
            if score >= target - 1e-12:
                return strokes, painted
        return None

    def miou_at(self, strokes: int) -> float:
        """Dataset mIoU after `strokes` strokes (the last value when the run ended earlier)."""
        score = self.curve[0][2]
        for s, _p, v in self.curve:
            if s > strokes:
                break
            score = v
        return score


def dataset_miou(matrices: dict[str, np.ndarray], num_classes: int) -> float:
    return scores_from_confusion(sum(matrices.values()), [str(i) for i in range(num_classes)])["mIoU"]


def simulate(project: Project, truth: dict[str, np.ndarray], assistant: Assistant, *, radius: int,
             tolerance: float = 0.0, seed: int = 0, max_strokes: int | None = None,
             log: Callable[[str], None] | None = None) -> EffortResult:
    """Run the simulated annotator on `project` (its class i is ground-truth value i) until every image is
    reviewed or `max_strokes` strokes were painted. `truth`: image id -> ground truth (uint8, 255 ignored)."""
    t_all = time.perf_counter()
    num_classes = len(project.class_names)
    ids = list(truth)
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    result = EffortResult(assistant.name, len(ids))
    labels: dict[str, np.ndarray] = {}
    matrices: dict[str, np.ndarray] = {}

    def reread(changed: list[str] | None) -> None:
        for i in (ids if changed is None else changed):
            labels[i] = project.get_labels(i)
            matrices[i] = confusion_matrix(truth[i], labels[i], num_classes)

    t = time.perf_counter()
    changed = assistant.start(project, order)
    result.start_seconds = time.perf_counter() - t
    reread(None)
    result.curve.append((0, 0, dataset_miou(matrices, num_classes)))
    done: list[str] = []
    for index, image_id in enumerate(order):
        gt = truth[image_id]
        valid = int((gt != UNLABELLED).sum())
        round_tool = 0.0
        while True:
            current = labels[image_id]
            wrong = int(((current != gt) & (gt != UNLABELLED)).sum())
            if wrong <= tolerance * valid:
                break
            if max_strokes is not None and result.strokes >= max_strokes:
                result.stopped = f"stopped at {max_strokes} strokes"
                break
            cls, region = largest_wrong_region(current, gt, num_classes)
            painted = paint_mask(region, longest_stroke(region, radius), radius)
            verified = project.get_verified(image_id)
            new = current.copy()
            new[painted] = cls
            project.set_labels(image_id, new, verified=verified | painted, source="simulated annotator")
            result.strokes += 1
            result.painted += int(painted.sum())
            t = time.perf_counter()
            changed = assistant.after_stroke(project, image_id)
            spent = time.perf_counter() - t
            round_tool += spent
            result.stroke_seconds += spent
            reread(None if changed is None else sorted({image_id, *changed}))
            result.curve.append((result.strokes, result.painted, dataset_miou(matrices, num_classes)))
        if result.stopped:
            break
        project.set_verified(image_id, np.ones(gt.shape, bool), source="reviewed")  # Reviewed ✓
        result.reviewed += 1
        done.append(image_id)
        t = time.perf_counter()
        changed = assistant.after_image(project, list(done), order[index + 1:])
        round_tool += time.perf_counter() - t
        result.round_seconds.append(round_tool)
        reread(changed)
        result.curve[-1] = (result.strokes, result.painted, dataset_miou(matrices, num_classes))
        if log is not None:
            log(f"{assistant.name}: {result.reviewed}/{len(ids)} reviewed, {result.strokes} strokes, "
                f"mIoU {result.curve[-1][2]:.3f}, tool {round_tool:.2f}s")
    result.wall_seconds = time.perf_counter() - t_all
    return result


# --- assistants -------------------------------------------------------------------------------------------
class MaskCLIPText(Assistant):
    """(b): every image segmented once with MaskCLIP's text (what `maskclip project segment` stores)."""

    name = "b"

    def __init__(self, model, options: dict):
        self.model, self.options = model, dict(options)
        self.images: dict[str, np.ndarray] = {}

    def image(self, project, image_id):
        if image_id not in self.images:
            self.images[image_id] = project.get_image(image_id)
        return self.images[image_id]

    def segment(self, project, image_id, learned=None) -> None:
        seg = self.model.segment(self.image(project, image_id), project.prompts, background=project.background,
                                 learned=learned, **self.options)
        project.merge_prediction(image_id, seg.labels, seg.probs.max(axis=0), class_names=seg.class_names,
                                 source=f"maskclip {self.model.model_name}")

    def start(self, project, ids):
        for image_id in ids:
            self.segment(project, image_id)
        return None


class Learning(MaskCLIPText):
    """(c): (b) + the visual term learned from verified pixels; live redraw of the current image after each
    stroke, redraw of the images not yet reviewed after each reviewed image."""

    name = "c"

    def __init__(self, model, options: dict, weight: float = 0.5, live_every: int = 1):
        super().__init__(model, options)
        from maskclip.prototypes import ProjectPrototypes

        self.weight, self.live_every, self.strokes = weight, live_every, 0
        self.learner = ProjectPrototypes(self.options["scales"])
        self.refined: set[str] = set()  # images whose labels come from a MaskCLIP+ student (level d)

    def after_stroke(self, project, image_id):
        self.strokes += 1
        if self.strokes % self.live_every:
            return []
        self.learner.update_image(self.model, project, image_id, self.image(project, image_id))
        if image_id in self.refined:
            return []
        self.segment(project, image_id, self.learner.term(self.weight))
        return [image_id]

    def after_image(self, project, done, todo):
        self.learner.update_image(self.model, project, done[-1], self.image(project, done[-1]))
        redraw = [i for i in todo if i not in self.refined]
        for image_id in redraw:
            self.segment(project, image_id, self.learner.term(self.weight))
        return redraw


class WithStudent(Learning):
    """(d): (c) + `maskclip train` and `maskclip refine` every `every` reviewed images."""

    name = "d"

    def __init__(self, model, options: dict, weight: float, live_every: int = 1, *, every: int,
                 train_args: Sequence[str], run_root: Path, log=None):
        super().__init__(model, options, weight, live_every)
        self.every, self.train_args, self.run_root, self.log = every, list(train_args), Path(run_root), log
        self.runs = 0
        self.train_seconds: list[float] = []

    def _cli(self, *args) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run([sys.executable, "-m", "maskclip", *args], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"maskclip {' '.join(args[:1])} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")

    def after_image(self, project, done, todo):
        changed = super().after_image(project, done, todo)
        if len(done) % self.every or not todo:
            return changed
        self.runs += 1
        run = self.run_root / f"run-{self.runs:02d}"
        project.flush()
        t = time.perf_counter()
        self._cli("train", str(project.root), "--run", str(run), *self.train_args)
        self._cli("refine", str(project.root), "--run", str(run), "--device", "cpu")
        self.train_seconds.append(time.perf_counter() - t)
        if self.log is not None:
            self.log(f"d: train + refine #{self.runs} took {self.train_seconds[-1]:.0f}s")
        self.refined.update(project.image_ids)
        return None


class RandomForest(Assistant):
    """(e): ilastik-style pixel classifier: multiscale_basic_features + a random forest on the verified pixels,
    retrained after each reviewed image, predicting the images not yet reviewed."""

    name = "e"

    def __init__(self, *, sigma_max: float = 16.0, samples: int = 20000, trees: int = 50, seed: int = 0):
        self.sigma_max, self.samples, self.trees, self.seed = sigma_max, samples, trees, seed
        self.features: dict[str, np.ndarray] = {}

    def feature(self, project, image_id):
        if image_id not in self.features:
            from skimage.feature import multiscale_basic_features

            image = project.get_image(image_id).astype(np.float32) / 255.0
            self.features[image_id] = multiscale_basic_features(
                image, channel_axis=-1, sigma_min=1.0, sigma_max=self.sigma_max).astype(np.float32)
        return self.features[image_id]

    def start(self, project, ids):
        for image_id in ids:
            self.feature(project, image_id)
        return []

    def after_image(self, project, done, todo):
        from sklearn.ensemble import RandomForestClassifier

        if not todo:
            return []
        xs, ys = [], []
        for image_id in project.image_ids:
            labels, verified = project.get_labels_and_verified(image_id)
            keep = verified & (labels != UNLABELLED)
            if keep.any():
                xs.append(self.feature(project, image_id)[keep])
                ys.append(labels[keep])
        x, y = np.concatenate(xs), np.concatenate(ys)
        rng = np.random.default_rng(self.seed + len(done))
        if len(y) > self.samples:
            pick = rng.choice(len(y), self.samples, replace=False)
            x, y = x[pick], y[pick]
        forest = RandomForestClassifier(n_estimators=self.trees, n_jobs=2, random_state=self.seed).fit(x, y)
        for image_id in todo:
            f = self.feature(project, image_id)
            pred = forest.predict(f.reshape(-1, f.shape[-1])).reshape(f.shape[:2]).astype(np.uint8)
            project.merge_prediction(image_id, pred, source="random forest")
        return list(todo)


# --- datasets ---------------------------------------------------------------------------------------------
def make_project(root: Path, images: Sequence[np.ndarray], gts: Sequence[np.ndarray], classes, background,
                 settings: dict) -> tuple[Project, dict[str, np.ndarray]]:
    """A project of the images (PNG files under root/src) and the ground truth of each image id."""
    from PIL import Image

    src = root / "src"
    src.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(src / f"img{i:03d}.png")
    project = Project.create(root / "project", src, classes, background=background, settings=settings)
    by_file = {Path(project.record(i).file).stem: i for i in project.image_ids}
    truth = {by_file[f"img{i:03d}"]: gt for i, gt in enumerate(gts)}
    return project, truth


def toy_data(count: int):
    from maskclip import toy_clip

    scenes = toy_clip.held_out_scenes(count, seed=toy_clip.HELD_OUT_SEED + 77)
    return ([s.image for s in scenes], [s.labels for s in scenes], toy_clip.CLASS_NAMES + ["background"],
            list(toy_clip.BACKGROUND_PROMPTS))


def camvid_data(count: int, size: tuple[int, int]):
    from PIL import Image

    from maskclip.images import read_image
    from maskclip.labels_io import read_classes_json, read_label_image

    names = read_classes_json(CAMVID / "classes.json")["classes"]
    paths = sorted((CAMVID / "val" / "images").glob("*.jpg"))
    step = max(1, len(paths) // count)
    paths = paths[::step][:count]  # spread over the val sequence, not 30 consecutive frames
    images, gts = [], []
    for p in paths:
        images.append(np.asarray(Image.fromarray(read_image(p)).resize(size, Image.BILINEAR)))
        gts.append(np.asarray(Image.fromarray(read_label_image(CAMVID / "val" / "labels" / f"{p.stem}.png"))
                              .resize(size, Image.NEAREST)))
    return images, gts, list(names), []


# --- reporting --------------------------------------------------------------------------------------------
def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def report(name: str, results: dict[str, EffortResult], every: int, setup: str) -> str:
    longest = max(r.strokes for r in results.values())
    marks = list(range(0, longest + every, every))
    curve = table(["strokes"] + [LEVEL_NAMES[k] for k in results],
                  [[str(m)] + [f"{r.miou_at(m):.3f}" + ("" if m <= r.strokes else " (end)") for r in results.values()]
                   for m in marks])
    rows = []
    for key, r in results.items():
        cells = [LEVEL_NAMES[key]]
        for target in TARGETS:
            hit = r.reached(target)
            cells.append(f"{hit[0]} / {hit[1]}" if hit else "not reached")
        mean_round = np.mean(r.round_seconds) if r.round_seconds else 0.0
        cells += [f"{r.strokes} / {r.painted}", f"{r.curve[-1][2]:.3f}",
                  f"{r.start_seconds:.1f} s", f"{mean_round:.2f} s (max {max(r.round_seconds, default=0):.2f})",
                  f"{r.wall_seconds:.0f} s" + (f"; {r.stopped}" if r.stopped else "")]
        rows.append(cells)
    effort = table(["level", "80% mIoU: strokes / px", "90%", "95%", "all reviewed: strokes / px", "final mIoU",
                    "tool: start", "tool per round (mean)", "run"], rows)
    return "\n".join([setup, "", "Strokes / painted pixels to reach a dataset mIoU of 80, 90 and 95% (perfect "
                      "labels = 1.0):", "", effort, "", f"Dataset mIoU after every {every} strokes:", "", curve])


def plot(path: Path, title: str, results: dict[str, EffortResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for key, r in results.items():
        ax.plot([c[0] for c in r.curve], [c[2] for c in r.curve], label=LEVEL_NAMES[key], lw=1.6)
    for target in TARGETS:
        ax.axhline(target, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("brush strokes")
    ax.set_ylabel("dataset mIoU")
    ax.set_ylim(0, 1.01)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --- main -------------------------------------------------------------------------------------------------
def run_dataset(args, name: str, publish: Callable[[str, dict], None] | None = None
                ) -> tuple[str, dict[str, EffortResult]]:
    """Every level of `args.levels` on one dataset; `publish(body, results)` after each level (the levels so
    far), so a run cut short keeps what it measured."""
    import torch

    import maskclip

    say = lambda text: print(f"[{time.strftime('%H:%M:%S')}] {name} {text}", flush=True)  # noqa: E731
    if name == "toy":
        from maskclip import toy_clip

        checkpoint = Path(args.toy_checkpoint) if args.toy_checkpoint else toy_clip.find_checkpoint()
        if checkpoint is None or not checkpoint.is_file():
            raise SystemExit("toy CLIP not found: set MASKCLIP_TOY_CLIP_DIR or run `python -m maskclip.toy_clip`")
        images, gts, classes, background = toy_data(args.toy_images)
        model_name, pretrained, scales = toy_clip.MODEL_NAME, str(checkpoint), (toy_clip.IMAGE_SIZE,)
        radius, tolerance, sigma_max, live_every = args.toy_radius, args.toy_tolerance, 8.0, args.toy_live_every
        size_args = ["--crop-size", "64", "--base-size", "64"]
        setup = (f"**toy** ({checkpoint.name}, dense mode maskclip, KS+PD, scale 64): {len(images)} held-out scenes "
                 f"(64x64, 12 shape classes + background); brush radius {radius} px; an image is reviewed when at "
                 f"most {tolerance:.1%} of its pixels are wrong")
    else:
        if not CAMVID.is_dir():
            raise SystemExit(f"CamVid not found at {CAMVID}")
        size = tuple(args.camvid_size)
        images, gts, classes, background = camvid_data(args.camvid_images, size)
        model_name, pretrained, scales = "ViT-B-16", "none", (args.camvid_scale,)
        radius, tolerance, sigma_max = args.camvid_radius, args.camvid_tolerance, 16.0
        live_every = args.camvid_live_every
        size_args = ["--crop-size", str(min(size)), "--base-size", str(min(size))]
        setup = (f"**CamVid** (ViT-B-16 with random weights, dense mode maskclip, KS+PD, scale {scales[0]}): "
                 f"{len(images)} val images (every {max(1, 101 // args.camvid_images)}th) downscaled to "
                 f"{size[0]}x{size[1]} (labels nearest), 11 classes, void ignored; brush radius {radius} px; an image "
                 f"is reviewed when at most {tolerance:.1%} of its pixels are wrong. The text of a random CLIP "
                 "means nothing: only learning from corrections, the student and the pixel classifier can help")
    cadence = "each stroke" if live_every == 1 else f"every {live_every} strokes"
    setup += (f"; (c) and (d) redraw the current image after {cadence} and the images not yet reviewed after each "
              f"reviewed image, learned-term weight {args.weight}")
    settings = {"model": {"name": model_name, "pretrained": pretrained, "dense_mode": "maskclip"},
                "method": {"scales": list(scales)}}
    options = {"scales": scales, "key_smoothing": True, "prompt_denoising": True}
    results: dict[str, EffortResult] = {}
    with tempfile.TemporaryDirectory(prefix=f"effort-{name}-", dir=args.tmp) as tmp:
        for level in args.levels:
            if level in "bcd":  # a fresh model per level: no level finds features cached by another
                torch.manual_seed(0)
                model = maskclip.load(model_name, pretrained=None if pretrained == "none" else pretrained,
                                      device="cpu")
            project, truth = make_project(Path(tmp) / level, images, gts, classes, background, settings)
            if level == "a":
                assistant = Assistant()
            elif level == "b":
                assistant = MaskCLIPText(model, options)
            elif level == "c":
                assistant = Learning(model, options, args.weight, live_every)
            elif level == "d":
                train_args = ["--iters", str(args.train_iters), "--batch-size", "4", "--device", "cpu",
                              "--no-imagenet", "--seed", str(args.seed), "--checkpoint-every", str(args.train_iters),
                              "--model", model_name, "--pretrained", pretrained, *size_args]
                assistant = WithStudent(model, options, args.weight, live_every,
                                        every=args.train_every or max(1, len(images) // 2),
                                        train_args=train_args, run_root=Path(tmp) / "runs", log=say)
            else:
                assistant = RandomForest(sigma_max=sigma_max, samples=args.rf_samples, seed=args.seed)
            say(f"level {level} ...")
            results[level] = simulate(project, truth, assistant, radius=radius, tolerance=tolerance, seed=args.seed,
                                      max_strokes=args.max_strokes, log=say if args.verbose else None)
            r = results[level]
            say(f"level {level}: {r.strokes} strokes, {r.painted} px, final mIoU {r.curve[-1][2]:.3f}, "
                f"90% at {r.reached(0.9)}, {r.wall_seconds:.0f}s")
            if level == "d":
                setup_d = (f"(d) trains `maskclip train --iters {args.train_iters} --batch-size 4` (the default "
                           f"student: on a CPU the clip student, {size_args[1]} px crops) and refines every {assistant.every} reviewed images; "
                           f"each train + refine took {np.mean(assistant.train_seconds or [0]):.0f} s")
                setup += ". " + setup_d
            if publish is not None:
                publish(summary(args, name, results, setup), results)
    return summary(args, name, results, setup), results


def summary(args, name: str, results: dict[str, EffortResult], setup: str) -> str:
    every = args.every or max(1, round(max(r.strokes for r in results.values()) / 12, -1) or 10)
    return report(name, results, int(every), setup)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", nargs="+", default=["toy", "camvid"], choices=("toy", "camvid"))
    ap.add_argument("--levels", nargs="+", default=list("abcde"), choices=list("abcde"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--toy-checkpoint")
    ap.add_argument("--toy-images", type=int, default=40)
    ap.add_argument("--toy-radius", type=int, default=3)
    ap.add_argument("--toy-tolerance", type=float, default=0.0)
    ap.add_argument("--camvid-images", type=int, default=10)  # the recorded run (20 did not fit the time on the shared machine)
    ap.add_argument("--camvid-size", type=int, nargs=2, default=[240, 180])
    ap.add_argument("--camvid-scale", type=int, default=224)
    ap.add_argument("--camvid-radius", type=int, default=4)
    ap.add_argument("--camvid-tolerance", type=float, default=0.005)
    ap.add_argument("--toy-live-every", type=int, default=1, help="(c, d): live redraw every K strokes")
    ap.add_argument("--camvid-live-every", type=int, default=5, help="(c, d): live redraw every K strokes")
    ap.add_argument("--weight", type=float, default=0.5, help="learned-term weight (the project default)")
    ap.add_argument("--train-every", type=int, default=None,
                    help="(d): train + refine every N reviewed images (default: half the images, i.e. once)")
    ap.add_argument("--train-iters", type=int, default=40)
    ap.add_argument("--rf-samples", type=int, default=20000)
    ap.add_argument("--max-strokes", type=int, default=None)
    ap.add_argument("--every", type=int, default=None, help="table step in strokes (default: ~12 rows)")
    ap.add_argument("--tmp", default="/dev/shm" if Path("/dev/shm").is_dir() else None,
                    help="where the projects are made (default: /dev/shm, a RAM disk, so the shared machine's disk "
                         "syncs do not dominate; pass a disk folder to include them)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--write", action="store_true", help="write bench/results.md's section and the plots")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    from results_file import machine_line, write_section

    for name in args.dataset:
        start = time.perf_counter()

        def publish(body, results, final=False):
            minutes = (time.perf_counter() - start) / 60
            levels = "" if final else f" (levels so far: {', '.join(results)}; the run goes on)"
            body = "\n".join([machine_line() + f"; this dataset's run {minutes:.1f} min{levels}", "", body,
                              "", f"![effort](../docs/annotation_effort_{name}.png)"])
            if final:
                print(body, flush=True)
            if args.write:
                plot(DOCS / f"annotation_effort_{name}.png",
                     f"Simulated annotator, {name}: dataset mIoU vs brush strokes", results)
                write_section(f"## Annotation effort: {name} (bench/bench_annotation_effort.py)", body)

        body, results = run_dataset(args, name, publish)
        publish(body, results, final=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
