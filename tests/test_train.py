"""MaskCLIP+ training: student, targets, loop (loss, verified pixels, phases, resume), project train/refine."""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from conftest import two_tone

from maskclip.errors import MaskCLIPError
from maskclip.text import prompt_rows
from maskclip.train import (IGNORE, AugmentConfig, TeacherCache, TrainConfig, TrainItem, build_student,
                            guided_target, random_class_embeddings, self_training_target, train)
from maskclip.train import loop as loop_module
from maskclip.train.data import BatchPlan, augment
from maskclip.train.loop import RunFolder, load_student
from maskclip.run_folder import read_progress, read_refine_progress

H, W = 48, 64
STUDENT = "lraspp_mobilenet_v3_large"


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)



def bottom_verified_as_1() -> tuple[np.ndarray, np.ndarray]:
    labels = np.full((H, W), IGNORE, np.uint8)
    labels[H // 2:] = 1
    return labels, labels != IGNORE


def make_setup(tmp_path, n=4, teacher_label=None, verified=False):
    """Items, a filled teacher cache (correct two-tone labels unless `teacher_label` fixes one class)."""
    ann = bottom_verified_as_1 if verified else None
    items = [TrainItem(f"img{i}", functools.partial(two_tone, i), ann) for i in range(n)]
    teacher = TeacherCache(tmp_path / "teacher", {"test": 1}).open()
    for it in items:
        lab = np.zeros((H, W), np.uint8)
        if teacher_label is None:
            lab[H // 2:] = 1
        else:
            lab[:] = teacher_label
        teacher.put(it.key, lab)
    return items, teacher


def small_config(**kw) -> TrainConfig:
    base = dict(iters=30, batch_size=2, student=STUDENT, imagenet_backbone=False, log_every=1,
                checkpoint_every=1000, guided_fraction=1.0, augment=AugmentConfig(base_size=48, crop_size=48))
    base.update(kw)
    return TrainConfig(**base)


def metrics(run_dir):
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def predict_two_tone(student) -> np.ndarray:
    """Labels of an unseen two-tone image. BatchNorm uses batch statistics: after a few dozen iterations
    MobileNet's running averages (momentum 0.01) still mostly hold their initial values."""
    from maskclip.train.data import normalise

    x = torch.stack([torch.from_numpy(two_tone(s).astype(np.float32) / 255).permute(2, 0, 1) for s in (98, 99)])
    student.train()
    with torch.no_grad():
        return student(normalise(x)).argmax(dim=1)[1].numpy()


# --- student ---------------------------------------------------------------------------------------
def test_student_classifier_is_frozen_text_embeddings_and_classes_can_change():
    emb = random_class_embeddings(3, 32, seed=1)
    s = build_student(STUDENT, emb, imagenet_backbone=False).eval()
    assert "class_embeddings" not in dict(s.named_parameters())  # a buffer: SGD never moves it
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = s(x)
        feat = s.embed(x)
    assert logits.shape == (1, 3, 64, 64)
    assert torch.allclose(feat.norm(dim=1), torch.ones(1), atol=1e-5)  # cosine classifier
    # the logits are scale * cosine(features, text) (checked at the feature resolution)
    direct = s.logit_scale * torch.einsum("bdhw,kd->bkhw", feat, emb)
    assert torch.allclose(torch.nn.functional.interpolate(direct, size=(64, 64), mode="bilinear"), logits, atol=1e-3)
    # new classes, same weights: the new logits are the new embeddings' cosines
    new = random_class_embeddings(5, 32, seed=2)
    s.set_classes(new)
    with torch.no_grad():
        assert s(x).shape == (1, 5, 64, 64)
    with pytest.raises(MaskCLIPError):
        s.set_classes(random_class_embeddings(2, 16))
    # merged rows (background prompts): max over the rows of each class
    s.set_classes(new, groups=[0, 1, 2, 2, 2])
    with torch.no_grad():
        merged = s(x)
        s.set_classes(new)
        full = s(x)
    assert torch.allclose(merged[:, 2], full[:, 2:].amax(dim=1), atol=1e-4)


def test_student_without_imagenet_weights_warns_and_initialises_randomly(monkeypatch):
    from maskclip.train import student as student_module

    def offline(*args, weights_backbone=None, **kw):
        if weights_backbone is not None:
            raise OSError("no network")
        return builder(*args, weights_backbone=None, **kw)

    builder, weights, desc = student_module.STUDENTS[STUDENT]
    monkeypatch.setitem(student_module.STUDENTS, STUDENT, (offline, weights, desc))
    with pytest.warns(RuntimeWarning, match="random initialisation"):
        s = build_student(STUDENT, random_class_embeddings(2, 16))
    assert not s.imagenet_loaded


def test_prompt_rows_merge_background_prompts():
    rows, groups, names, bg = prompt_rows(["road", ["car", "vehicle"]], ["sky", "tree"])
    assert rows == [["road"], ["car", "vehicle"], ["sky"], ["tree"]]
    assert groups == [0, 1, 2, 2] and names == ["road", "car", "background"] and bg == 2
    rows, groups, names, bg = prompt_rows(["background", "car"], ["sky", "car"])  # "car" is a user class already
    assert rows == [["background"], ["car"], ["sky"]] and groups == [0, 1, 0] and names == ["background", "car"]
    assert bg == 0 and prompt_rows(["road"], [])[1:] == ([0], ["road"], None)


# --- targets ---------------------------------------------------------------------------------------
def test_targets_verified_pixels_win_in_both_phases():
    pseudo = np.array([[0, 0], [1, 1]], np.uint8)
    conf = np.array([[0.9, 0.2], [0.9, 0.2]], np.float32)
    labels = np.array([[2, 255], [255, 255]], np.uint8)
    verified = np.array([[True, False], [False, True]])
    t = guided_target(pseudo, conf, labels, verified, threshold=0.5)
    # verified -> annotation (255 stays 255: a verified "nothing"), unsure teacher pixel -> ignored
    assert t.tolist() == [[2, IGNORE], [1, IGNORE]]
    assert guided_target(pseudo, conf, labels, verified).tolist() == [[2, 0], [1, 255]]

    logits = torch.tensor([[[[5.0, 0.0]], [[0.0, 0.1]]]])  # [1,2,1,2]: pixel 0 sure class 0, pixel 1 unsure
    target = torch.tensor([[[1, 1]]])
    ver = torch.tensor([[[True, False]]])
    assert self_training_target(logits, target, ver).tolist() == [[[1, 1]]]
    assert self_training_target(logits, target, ~ver).tolist() == [[[0, 1]]]
    none = torch.zeros_like(ver)
    assert self_training_target(logits, target, none, threshold=0.9).tolist() == [[[0, IGNORE]]]
    assert self_training_target(logits, target, ~ver, threshold=0.9).tolist() == [[[0, 1]]]


def test_teacher_cache_follows_signature_and_image_content(tmp_path):
    cache = TeacherCache(tmp_path / "t", {"model": "a"}).open()
    cache.put("x/1.png", np.ones((2, 3), np.uint8), np.full((2, 3), 0.5), fingerprint="sha-1")
    labels, conf = cache.get("x/1.png", "sha-1")
    assert labels.tolist() == [[1] * 3] * 2 and np.allclose(conf, 0.5)
    assert cache.has("x/1.png", "sha-1") and not cache.has("x/1.png", "sha-2")  # image content changed
    assert TeacherCache(tmp_path / "t", {"model": "a"}).open().has("x/1.png", "sha-1")  # same settings: kept
    assert not TeacherCache(tmp_path / "t", {"model": "b"}).open().has("x/1.png", "sha-1")  # other model: gone


def test_augment_keeps_pixels_aligned_and_pads_with_ignore():
    img = two_tone(0).astype(np.float32) / 255
    target = np.zeros((H, W), np.uint8)
    target[H // 2:] = 1
    cfg = AugmentConfig(base_size=48, crop_size=80, scale_range=(0.8, 1.2), photometric=False)
    for seed in range(5):
        x, t, v = augment(img, target, target.astype(bool), cfg, np.random.default_rng(seed))
        assert x.shape == (3, 80, 80) and t.shape == (80, 80)
        assert (t[:, -1] == IGNORE).all() and v[:, -1].all()  # padding: ignored, a fixed target in both phases
        inside = t != IGNORE
        blue = x[2] > x[0]  # normalised blue channel above red: the bottom half
        assert (blue[inside] == (t[inside] == 1)).float().mean() > 0.97
        assert torch.equal(v[inside], t[inside] == 1)


def test_batch_plan_is_a_function_of_the_iteration_and_shards_ranks():
    plan = BatchPlan(5, 2, seed=3)
    assert BatchPlan(5, 2, seed=3).batch(7) == plan.batch(7)  # no replay needed to resume
    seen = [i for it in range(5) for i, _ in plan.batch(it)]
    assert sorted(seen[:5]) == list(range(5))  # the first epoch covers every image once
    r0, r1 = BatchPlan(6, 1, seed=0, rank=0, world_size=2), BatchPlan(6, 1, seed=0, rank=1, world_size=2)
    assert sorted(r0.batch(i)[0][0] for i in range(3)) + sorted(r1.batch(i)[0][0] for i in range(3)) != []
    assert {r0.batch(i)[0][0] for i in range(3)}.isdisjoint({r1.batch(i)[0][0] for i in range(3)})


# --- training loop ---------------------------------------------------------------------------------
def test_loss_falls_on_a_tiny_set(tmp_path):
    items, teacher = make_setup(tmp_path)
    result = train(items, teacher, random_class_embeddings(2, 32), ["red", "blue"], tmp_path / "run",
                   small_config(iters=40))
    assert result.state == "done"
    losses = [m["loss"] for m in metrics(tmp_path / "run")]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:5])
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["state"] == "done" and progress["iteration"] == progress["total"] == 40
    assert progress["phase"] == "guided" and progress["loss"] == pytest.approx(losses[-1])
    student, record = load_student(tmp_path / "run")
    assert record["classes"] == ["red", "blue"]
    assert (predict_two_tone(student)[H // 2 + 4:] == 1).mean() > 0.9


def record_loss_targets(monkeypatch) -> list:
    """The target of every loss computation in the training loop, in order."""
    seen = []
    real = loop_module._cross_entropy

    def spy(logits, target):
        seen.append(target.clone())
        return real(logits, target)

    monkeypatch.setattr(loop_module, "_cross_entropy", spy)
    return seen


def test_verified_pixels_are_used_as_ground_truth(tmp_path, monkeypatch):
    # the teacher says "red" everywhere; annotators verified the bottom halves as "blue"
    seen = record_loss_targets(monkeypatch)
    items, teacher = make_setup(tmp_path, teacher_label=0, verified=True)
    cfg = small_config(iters=40, log_every=10)
    cfg.augment.hflip = cfg.augment.photometric = False
    cfg.augment.scale_range = (1.0, 1.0)
    train(items, teacher, random_class_embeddings(2, 32), ["red", "blue"], tmp_path / "run", cfg)
    # the loss saw the annotation on the verified (bottom) rows and the teacher elsewhere
    assert all((t[:, H // 2:] == 1).all() and (t[:, : H // 2] == 0).all() for t in seen)
    labels = predict_two_tone(load_student(tmp_path / "run")[0])
    assert (labels[H // 2 + 4:] == 1).mean() > 0.9  # learnt from the verified pixels, not the teacher
    assert (labels[: H // 2 - 4] == 0).mean() > 0.9


@pytest.mark.parametrize("kw,switch", [({"guided_fraction": 0.1}, 2), ({"self_train_start": 7}, 7)])
def test_phase_switch_happens_at_the_configured_iteration(tmp_path, monkeypatch, kw, switch):
    calls = []
    real = loop_module.self_training_target

    def spy(logits, target, verified, threshold=None):
        calls.append(True)
        return real(logits, target, verified, threshold)

    monkeypatch.setattr(loop_module, "self_training_target", spy)
    items, teacher = make_setup(tmp_path)
    cfg = small_config(iters=20, **kw)
    assert cfg.switch_iteration == switch
    train(items, teacher, random_class_embeddings(2, 32), ["red", "blue"], tmp_path / "run", cfg)
    phases = [m["phase"] for m in metrics(tmp_path / "run")]  # record n describes iteration index n-1
    assert phases == ["guided"] * switch + ["self-training"] * (20 - switch)
    assert len(calls) == 20 - switch  # student targets used exactly in the self-training iterations


def test_self_training_never_labels_the_padding(tmp_path, monkeypatch):
    # crops larger than the scaled image are padded: the padding stays ignored when the student's own
    # arg-max replaces the teacher (as in the official code, whose label padding is never self-labelled)
    seen = record_loss_targets(monkeypatch)
    items, teacher = make_setup(tmp_path)
    cfg = small_config(iters=4, guided_fraction=0.0, augment=AugmentConfig(
        base_size=H, crop_size=W, scale_range=(1.0, 1.0), hflip=False, photometric=False))
    train(items, teacher, random_class_embeddings(2, 32), ["red", "blue"], tmp_path / "run", cfg)
    assert len(seen) == 4
    for t in seen:  # the 48x64 image fills the top 48 rows of each 64x64 crop
        assert (t[:, H:] == IGNORE).all() and (t[:, :H] != IGNORE).all()


def test_automatic_switch_turns_self_training_off_for_a_random_student(tmp_path):
    items, teacher = make_setup(tmp_path)
    said = []
    cfg = small_config(iters=10, guided_fraction=None)  # imagenet_backbone=False: random initialisation
    train(items, teacher, random_class_embeddings(2, 32), ["red", "blue"], tmp_path / "run", cfg, log=said.append)
    assert [m["phase"] for m in metrics(tmp_path / "run")] == ["guided"] * 10
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["guided_fraction"] == 1.0 and saved["info"]["imagenet_backbone"] is False
    assert any("self-training is off" in line for line in said)
    # with ImageNet weights the paper's switch; an explicit choice is never overridden
    with_imagenet = TrainConfig(iters=100)
    assert not with_imagenet.resolve_self_training(True) and with_imagenet.switch_iteration == 10
    explicit = TrainConfig(iters=100, self_train_start=30)
    assert not explicit.resolve_self_training(False) and explicit.switch_iteration == 30


@pytest.mark.parametrize("extra", [{}, {"ema_decay": 0.5, "self_train_balance": 0.5}])
def test_resume_reaches_the_same_state_as_an_uninterrupted_run(tmp_path, extra):
    items, teacher = make_setup(tmp_path, verified=True)
    emb = random_class_embeddings(2, 32)
    cfg = dict(iters=12, checkpoint_every=4, guided_fraction=0.25, log_every=3, **extra)
    full = train(items, teacher, emb, ["red", "blue"], tmp_path / "a", small_config(**cfg))
    assert full.state == "done"

    stopped = train(items, teacher, emb, ["red", "blue"], tmp_path / "b", small_config(**cfg),
                    stop=lambda it: it == 7)  # like a SIGTERM after iteration 7
    assert stopped.state == "cancelled" and stopped.iteration == 7
    progress = json.loads((tmp_path / "b" / "progress.json").read_text())
    assert progress["state"] == "cancelled" and progress["iteration"] == 7
    assert torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=False)["iteration"] == 7
    assert not (tmp_path / "b" / "student.pt").exists()

    resumed = train(items, teacher, emb, ["red", "blue"], tmp_path / "b", small_config(**cfg), resume=True)
    assert resumed.state == "done" and resumed.iteration == 12
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=False)
    assert a["iteration"] == b["iteration"] == 12
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert (a["ema"] is None) == (b["ema"] is None) == (not extra)
    for key, value in (a["ema"] or {}).items():  # the mean teacher resumes too
        assert torch.equal(value, b["ema"][key]), key
    for pid, state in a["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], b["optimizer"]["state"][pid]["momentum_buffer"])
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]
    # the metrics log reads as one run
    assert [m["iteration"] for m in metrics(tmp_path / "b")] == [3, 6, 7, 9, 12]


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    items, teacher = make_setup(tmp_path)
    with pytest.raises(MaskCLIPError, match="nothing to resume"):
        train(items, teacher, random_class_embeddings(2, 32), ["red", "blue"], tmp_path / "run",
              small_config(iters=2), resume=True)


def test_failure_is_recorded_in_progress(tmp_path):
    items, teacher = make_setup(tmp_path)
    items.append(TrainItem("missing", functools.partial(two_tone, 5)))  # no pseudo labels cached
    with pytest.raises(Exception):
        train(items, teacher, random_class_embeddings(2, 32), ["red", "blue"], tmp_path / "run",
              small_config(iters=10, batch_size=5))
    progress = RunFolder(tmp_path / "run").read_progress()
    assert progress["state"] == "failed" and progress["error"]


# --- on a project ----------------------------------------------------------------------------------
def make_project(tmp_path):
    from PIL import Image

    from maskclip.project import Project

    src = tmp_path / "images"
    src.mkdir()
    for i in range(4):
        Image.fromarray(two_tone(i)).save(src / f"im{i}.png")
    project = Project.create(tmp_path / "project", images=src, classes=["red", "blue"],
                             settings={"model": {"name": "maskclip-tiny-vit", "pretrained": None},
                                       "method": {"scales": [64]}})
    return project


def test_train_and_refine_a_project_keep_verified_pixels_and_history(tmp_path):
    from maskclip.project import Project
    from maskclip.train.project_run import refine_project, train_project

    project = make_project(tmp_path)
    first = project.image_ids[0]
    labels = np.full((H, W), 255, np.uint8)
    labels[:, :8] = 0  # a strip verified as "red", even where the image is blue (an annotator's choice)
    project.set_labels(first, labels, labels != 255)
    before = project.get_labels(first)
    cfg = small_config(iters=6, guided_fraction=0.5, checkpoint_every=3, log_every=3)
    result = train_project(project.root, tmp_path / "run", cfg, device="cpu", log=lambda m: None)
    assert result.state == "done"
    run = RunFolder(tmp_path / "run")
    config = json.loads(run.config.read_text())
    assert config["classes"] == ["red", "blue", "background"]  # background prompts merged into one class
    assert config["info"]["clip"]["model"] == "maskclip-tiny-vit"
    assert len(list(run.teacher.glob("*.npz"))) == 4  # pseudo labels computed once per image, cached

    seen = []
    summary = refine_project(project.root, tmp_path / "run", device="cpu", log=lambda m: None,
                             progress=lambda done, total: seen.append(
                                 (done, total, read_refine_progress(run.path)["done"])))
    assert summary["refined"] == 4
    # refine reports through the run folder (refine_progress.json), written before each progress callback;
    # training's progress.json keeps saying the training is done
    assert seen == [(0, 4, 0), (1, 4, 1), (2, 4, 2), (3, 4, 3), (4, 4, 4)]
    refined = read_refine_progress(run.path)
    assert (refined["state"], refined["done"], refined["total"], refined["failed"]) == ("done", 4, 4, 0)
    assert refined["updated"] >= refined["started"]
    assert read_progress(run.path)["state"] == "done"
    project = Project.open(project.root)
    after, verified = project.get_labels_and_verified(first)
    assert np.array_equal(after[:, :8], before[:, :8]) and verified[:, :8].all() and not verified[:, 8:].any()
    for image_id in project.image_ids:
        assert project.history(image_id)[-1]["source"].startswith("maskclip+ refine")
    # the labels before refinement are recoverable
    previous = project.history(first)[-2]["rev"]
    project.restore_revision(first, previous)
    assert np.array_equal(project.get_labels(first), before)

    # classes changed after training: the student gets the new text embeddings, no retraining
    project.add_class("green")
    summary = refine_project(project.root, tmp_path / "run", device="cpu", log=lambda m: None)
    assert summary["classes"] == ["red", "blue", "green", "background"]
    assert np.array_equal(Project.open(project.root).get_labels(first)[:, :8], before[:, :8])


def test_load_student_errors_name_the_problem(tmp_path):
    with pytest.raises(MaskCLIPError, match="does not exist"):
        load_student(tmp_path / "missing")
    with pytest.raises(MaskCLIPError, match="holds no trained student"):
        load_student(tmp_path)


# --- class-balanced teacher confidence ---------------------------------------------------------------
def test_class_balanced_thresholds_keep_the_same_share_of_every_class(tmp_path):
    from maskclip.train.targets import class_balanced_thresholds

    cache = TeacherCache(tmp_path / "t", {"test": 1}).open()
    labels = np.zeros((10, 10), np.uint8)
    labels[5:] = 1  # class 0: confidences 0.90-0.99, class 1: 0.30-0.39 (one global bar would drop it all)
    conf = np.where(labels == 0, 0.9, 0.3) + np.tile(np.arange(10) / 100, (10, 1))
    cache.put("a", labels, conf)
    items = [TrainItem("a", lambda: None)]
    bars = class_balanced_thresholds(cache, items, 3, keep=0.5)
    assert bars.shape == (3,) and bars[2] == 0.0  # class 2 never predicted: nothing to drop
    target = guided_target(labels, conf, np.full_like(labels, IGNORE), np.zeros((10, 10), bool), bars)
    for c in (0, 1):
        assert (target == c).sum() == 25  # half of each class's 50 pixels: its most confident half
        assert conf[target == c].min() >= conf[(labels == c) & (target == IGNORE)].max()
    assert class_balanced_thresholds(cache, items, 3, keep=1.0)[:2].tolist() == pytest.approx([0.9, 0.3], abs=2e-3)
    with pytest.raises(MaskCLIPError):
        class_balanced_thresholds(cache, items, 3, keep=0.0)
    with pytest.raises(MaskCLIPError, match="keep"):
        TrainConfig(confidence_keep=1.5).validate()


def test_training_ignores_the_teachers_least_confident_pixels_of_each_class(tmp_path, monkeypatch):
    seen = record_loss_targets(monkeypatch)
    items = [TrainItem(f"img{i}", functools.partial(two_tone, i)) for i in range(2)]
    teacher = TeacherCache(tmp_path / "teacher", {"test": 1}).open()
    lab = np.zeros((H, W), np.uint8)
    lab[H // 2:] = 1
    unsure = np.zeros(H, bool)
    unsure[: H // 8] = unsure[H // 2: H // 2 + H // 8] = True  # the first quarter of each class's rows
    conf = np.where(unsure, 0.2, 0.9)[:, None] * np.ones((1, W))
    for it in items:
        teacher.put(it.key, lab, conf)
    cfg = small_config(iters=2, confidence_keep=0.75)
    cfg.augment.hflip = cfg.augment.photometric = False
    cfg.augment.scale_range = (1.0, 1.0)
    train(items, teacher, random_class_embeddings(2, 32), ["red", "blue"], tmp_path / "run", cfg)
    for t in seen:
        assert (t[:, unsure] == IGNORE).all() and (t[:, ~unsure] != IGNORE).all()


# --- self-training variants --------------------------------------------------------------------------
def test_class_balanced_self_training_promotes_a_habitually_unsure_class():
    from maskclip.train.targets import class_balanced_self_training_target

    # background (0) is sure everywhere it wins; class 1 never exceeds 0.45 but is second at pixels 2-3
    probs = torch.tensor([[0.99, 0.98, 0.55, 0.52, 0.30],
                          [0.005, 0.01, 0.40, 0.46, 0.45],
                          [0.005, 0.01, 0.05, 0.02, 0.25]])
    logits = probs.log().reshape(1, 3, 1, 5)
    target = torch.full((1, 1, 5), 2)
    free = torch.zeros(1, 1, 5, dtype=torch.bool)
    assert self_training_target(logits, target, free).tolist() == [[[0, 0, 0, 0, 1]]]  # arg-max: class 1 once
    balanced = class_balanced_self_training_target(logits, target, free, keep=0.5)
    # bars: class 0 the median of its confidences .99 .98 .55 .52 (0.765), class 1 0.45 (its only pixel)
    assert balanced.tolist() == [[[0, 0, IGNORE, 1, 1]]]  # relative strength wins pixel 3; pixel 2 unsure
    fixed = torch.tensor([[[False, False, False, True, False]]])
    assert class_balanced_self_training_target(logits, target, fixed, keep=0.5)[0, 0, 3] == 2  # verified stays


def test_mean_teacher_labels_self_training_keeps_the_teachers_pixels_and_is_the_result(tmp_path, monkeypatch):
    sources = []
    real = loop_module.self_training_target

    def spy(logits, target, fixed, threshold=None):
        sources.append((logits.requires_grad, target.clone(), fixed.clone()))
        return real(logits, target, fixed, threshold)

    monkeypatch.setattr(loop_module, "self_training_target", spy)
    items = [TrainItem(f"img{i}", functools.partial(two_tone, i)) for i in range(2)]
    teacher = TeacherCache(tmp_path / "teacher", {"test": 1}).open()
    lab = np.zeros((H, W), np.uint8)
    lab[H // 2:] = 1
    conf = np.where(np.arange(H) % 2 == 0, 0.9, 0.2)[:, None] * np.ones((1, W))  # even rows: sure
    for it in items:
        teacher.put(it.key, lab, conf)
    cfg = small_config(iters=6, guided_fraction=0.5, ema_decay=0.9, self_train_keep_teacher=True,
                       confidence_keep=0.5)
    cfg.augment.hflip = cfg.augment.photometric = False
    cfg.augment.scale_range = (1.0, 1.0)
    result = train(items, teacher, random_class_embeddings(2, 32), ["red", "blue"], tmp_path / "run", cfg)
    assert len(sources) == 3
    for grad, target, fixed in sources:
        assert not grad  # labelled by the EMA's forward pass, not the trained one
        assert (fixed[:, ::2] & (target[:, ::2] == torch.from_numpy(lab[::2, :48]).long())).all()  # teacher kept
        assert not fixed[:, 1::2].any()  # the teacher's unsure rows are relabelled
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    saved = torch.load(tmp_path / "run" / "student.pt", weights_only=False)["model"]
    assert all(torch.equal(saved[k], v) for k, v in last["ema"].items())  # the averaged weights are the result
    assert any(not torch.equal(saved[k], v) for k, v in last["model"].items())
    assert all(torch.equal(v, result.student.state_dict()[k]) for k, v in saved.items())
    with pytest.raises(MaskCLIPError, match="ema"):
        TrainConfig(ema_decay=1.0).validate()
