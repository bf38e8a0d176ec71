"""`maskclip train`'s defaults, wired from the command line to the trainer: the clip student (the CPU default)
gets the measured recipe (SCLIP teacher, confidence-keep 0.2, EMA 0.99, 300 iterations at batch 16); the
torchvision students keep the paper's; --dense-mode and the recipe's flags override; a resumed run keeps
what it was started with. The real CLI entry runs up to the trainer, whose call is captured (no training)."""
from __future__ import annotations

import json

import pytest

from maskclip.cli import main
from maskclip.defaults import CLIP_STUDENT_TRAIN_DEFAULTS, TORCHVISION_STUDENT_TRAIN_DEFAULTS
from maskclip.train import project_run
from maskclip.train.loop import TrainConfig

from test_train import make_project


@pytest.fixture
def captured(monkeypatch):
    """The trainer's config and info as train_project hands them over (training itself is skipped)."""
    calls = []

    def fake_train(items, teacher, embeddings, names, run_dir, config, **kw):
        calls.append({"config": config, "info": kw["info"]})
        return project_run.TrainResult("done", 1, 1, None, 0.0, 1.0, None)

    monkeypatch.setattr(project_run, "train", fake_train)
    return calls


def test_no_flags_give_the_clip_student_the_measured_recipe(tmp_path, captured):
    project = make_project(tmp_path)
    assert main(["train", str(project.root), "--run", str(tmp_path / "run"), "--device", "cpu"]) == 0
    config, info = captured[0]["config"], captured[0]["info"]
    assert config.student == "auto"  # the clip student on the CPU (the trainer settles the name)
    assert (config.teacher_mode, config.confidence_keep, config.ema_decay, config.iters, config.batch_size) == \
        ("sclip", 0.2, 0.99, 300, 16) == tuple(CLIP_STUDENT_TRAIN_DEFAULTS[k] for k in
                                              ("teacher_mode", "confidence_keep", "ema_decay", "iters", "batch_size"))
    assert info["clip"]["dense_mode"] == "sclip"  # the pseudo labels come from SCLIP, not the project's maskclip
    assert project.settings["model"].get("dense_mode", "maskclip") == "maskclip"
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (saved["teacher_mode"], saved["confidence_keep"], saved["ema_decay"]) == ("sclip", 0.2, 0.99)


def test_flags_override_the_recipe(tmp_path, captured):
    project = make_project(tmp_path)
    assert main(["train", str(project.root), "--run", str(tmp_path / "run"), "--device", "cpu",
                 "--dense-mode", "maskclip", "--confidence-keep", "1", "--ema-decay", "0", "--iters", "7",
                 "--batch-size", "2"]) == 0
    config, info = captured[0]["config"], captured[0]["info"]
    assert (config.teacher_mode, config.confidence_keep, config.ema_decay, config.iters, config.batch_size) == \
        ("maskclip", 1.0, 0.0, 7, 2)
    assert info["clip"]["dense_mode"] == "maskclip"


def test_torchvision_students_keep_the_paper_defaults(tmp_path, captured):
    project = make_project(tmp_path)
    assert main(["train", str(project.root), "--run", str(tmp_path / "run"), "--device", "cpu",
                 "--student", "lraspp_mobilenet_v3_large"]) == 0
    config, info = captured[0]["config"], captured[0]["info"]
    assert (config.teacher_mode, config.confidence_keep, config.ema_decay, config.iters, config.batch_size) == \
        (None, None, None, 2000, 8) == tuple(TORCHVISION_STUDENT_TRAIN_DEFAULTS[k] for k in
                                             ("teacher_mode", "confidence_keep", "ema_decay", "iters", "batch_size"))
    assert info["clip"]["dense_mode"] == "maskclip"  # the project's mode


def test_a_resumed_run_keeps_its_own_settings():
    """A run started before these defaults (no EMA, keep all recorded as None) does not gain them on resume:
    resolve_student_defaults runs only when a run starts."""
    old = TrainConfig.from_dict({"iters": 2000, "batch_size": 8, "student": "clip", "confidence_keep": None,
                                 "ema_decay": None})
    assert (old.teacher_mode, old.confidence_keep, old.ema_decay) == (None, None, None)
    fresh = TrainConfig(student="clip")
    fresh.resolve_student_defaults("clip")
    assert (fresh.teacher_mode, fresh.confidence_keep, fresh.ema_decay) == ("sclip", 0.2, 0.99)


def test_a_resnet_clip_keeps_the_projects_teacher(tmp_path, captured):
    """SCLIP exists for ViTs only: with a ResNet CLIP the clip student's default teacher is the project's mode."""
    project = make_project(tmp_path)
    project.update_settings({"model": {"name": "maskclip-tiny-rn", "pretrained": None}})
    assert main(["train", str(project.root), "--run", str(tmp_path / "run"), "--device", "cpu"]) == 0
    config, info = captured[0]["config"], captured[0]["info"]
    assert config.teacher_mode is None and info["clip"]["dense_mode"] == "maskclip"
    assert (config.confidence_keep, config.ema_decay) == (0.2, 0.99)
