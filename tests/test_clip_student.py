"""The CLIP-initialised MaskCLIP+ student (`--student clip`): built from the teacher's own open_clip tower."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import maskclip
from maskclip.train.loop import TrainConfig, load_student
from maskclip.train.student import CLIP_STUDENT, STUDENT_NAMES, ClipBackbone, build_student, student_from_state

from test_train import H, W, make_project
from test_train_cli import maskclip as run_cli


@pytest.fixture(scope="module", params=["maskclip-tiny-vit", "maskclip-tiny-rn"])
def clip(request):
    torch.manual_seed(0)
    return maskclip.load(request.param, None, device="cpu")


def test_clip_student_builds_from_the_teachers_tower(clip):
    emb = clip.encode_text(["red", "blue", "green"]).detach()
    student = build_student(CLIP_STUDENT, emb, clip_model=clip)
    assert isinstance(student.net, ClipBackbone) and CLIP_STUDENT in STUDENT_NAMES
    x = torch.randn(2, 3, 40, 56)
    logits = student(x)
    assert logits.shape == (2, 3, 40, 56) and torch.isfinite(logits).all()
    # the classifier is the text embeddings, a buffer (not trained)
    assert torch.allclose(student.class_embeddings, torch.nn.functional.normalize(emb, dim=1))
    assert "class_embeddings" not in dict(student.named_parameters())
    # a copy of the tower: training it leaves the teacher's weights alone
    first = next(student.net.visual.parameters())
    assert first.data_ptr() != next(clip.clip.visual.parameters()).data_ptr()
    logits.logsumexp(1).mean().backward()
    assert first.grad is not None
    # the untrained student's features are MaskCLIP's dense features (zero-initialised residual decoder)
    with torch.no_grad():
        clip_x = x * student.net.in_scale + student.net.in_shift
        dense = clip.encode_dense(torch.nn.functional.interpolate(clip_x, size=(
            round(40 / clip.stride) * clip.stride, round(56 / clip.stride) * clip.stride), mode="bilinear"))
        ours = student.net.eval()(x)
        up = torch.nn.functional.interpolate(dense.features, scale_factor=2, mode="bilinear")
        assert torch.allclose(ours, up, atol=1e-4)
    # rebuilt from its metadata and state dict (refine): same outputs
    rebuilt = student_from_state(student.metadata(), student.state_dict()).eval()
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), student.eval()(x), atol=1e-5)


def test_freeze_blocks_freezes_the_first_blocks():
    torch.manual_seed(0)
    clip = maskclip.load("maskclip-tiny-vit", None, device="cpu")
    emb = clip.encode_text(["red", "blue"]).detach()
    student = build_student(CLIP_STUDENT, emb, clip_model=clip, freeze_blocks=1)
    blocks = student.net.visual.transformer.resblocks
    assert not any(p.requires_grad for p in blocks[0].parameters())
    assert all(p.requires_grad for p in blocks[-1].parameters())
    assert not student.net.visual.conv1.weight.requires_grad
    rn = maskclip.load("maskclip-tiny-rn", None, device="cpu")
    student = build_student(CLIP_STUDENT, rn.encode_text(["red", "blue"]).detach(), clip_model=rn, freeze_blocks=2)
    v = student.net.visual
    assert not any(p.requires_grad for p in [*v.conv1.parameters(), *v.layer1.parameters(), *v.layer2.parameters()])
    assert all(p.requires_grad for p in v.layer3.parameters())
    student(torch.randn(1, 3, 64, 64)).sum().backward()


def test_optimizer_defaults_follow_the_student():
    c = TrainConfig(student="clip")
    c.resolve_optimizer("clip")
    assert (c.optimizer, c.lr, c.min_lr, c.weight_decay) == ("adamw", 1e-4, 1e-6, 0.01)
    c = TrainConfig()
    c.resolve_optimizer("lraspp_mobilenet_v3_large")
    assert (c.optimizer, c.lr, c.min_lr, c.weight_decay) == ("sgd", 0.01, 1e-4, 5e-4)


def test_train_clip_student_then_refine_keeps_verified_pixels(tmp_path):
    project = make_project(tmp_path)
    first = project.image_ids[0]
    labels = np.full((H, W), 255, np.uint8)
    labels[:, :8] = 0
    project.set_labels(first, labels, labels != 255)
    before = project.get_labels(first)
    run = tmp_path / "run"
    res = run_cli("train", project.root, "--run", run, "--iters", "2", "--batch-size", "2", "--student", "clip",
                  "--crop-size", "48", "--base-size", "48", "--device", "cpu", "--confidence-keep", "0.5",
                  "--ema-decay", "0.9", "--self-train-start", "1", "--self-train-keep-teacher",
                  "--self-train-balance", "0.5")
    assert res.returncode == 0, res.stderr
    progress = json.loads((run / "progress.json").read_text())
    assert progress["state"] == "done" and progress["iteration"] == 2
    config = json.loads((run / "config.json").read_text())["train"]
    assert config["student"] == "clip" and config["optimizer"] == "adamw" and config["lr"] == 1e-4
    assert (config["confidence_keep"], config["ema_decay"], config["self_train_keep_teacher"],
            config["self_train_balance"]) == (0.5, 0.9, True, 0.5)
    student, record = load_student(run)
    assert record["student"]["clip"]["model"] == "maskclip-tiny-vit"
    refined = run_cli("refine", project.root, "--run", run, "--device", "cpu")
    assert refined.returncode == 0, refined.stderr
    summary = json.loads(refined.stdout)
    assert summary["refined"] == 4
    per_image = {r["id"]: r for r in summary["images"]}
    assert set(per_image) == set(project.image_ids)
    assert all(0 <= r["mean_confidence"] <= 1 and r["changed_pixels"] >= 0 for r in per_image.values())
    assert sum(r["changed_pixels"] for r in per_image.values()) == summary["changed_pixels"]
    from maskclip.project import Project

    after = Project.open(project.root).get_labels(first)
    assert (after[:, :8] == before[:, :8]).all()  # verified pixels untouched


def test_clip_student_follows_the_teachers_dense_mode_and_decoder_options():
    torch.manual_seed(0)
    clip = maskclip.load("maskclip-tiny-vit", None, device="cpu", dense_mode="sclip")
    emb = clip.encode_text(["red", "blue"]).detach()
    x = torch.randn(1, 3, 32, 48)
    student = build_student(CLIP_STUDENT, emb, clip_model=clip)
    assert student.metadata()["clip"]["dense_mode"] == "sclip"
    with torch.no_grad():  # the untrained student's features are its teacher's (SCLIP's last block)
        clip_x = x * student.net.in_scale + student.net.in_shift
        up = torch.nn.functional.interpolate(clip.encode_dense(clip_x, "sclip").features, scale_factor=2,
                                             mode="bilinear")
        assert torch.allclose(student.net.eval()(x), up, atol=1e-4)
    assert build_student(CLIP_STUDENT, emb, clip_model=clip, clip_dense_mode="maskclip"
                         ).metadata()["clip"]["dense_mode"] == "maskclip"
    guided = build_student(CLIP_STUDENT, emb, clip_model=clip, clip_decoder="guided").eval()
    with torch.no_grad():  # zero-initialised: the guided decoder starts as upsampling at 1/2 of the input
        up = torch.nn.functional.interpolate(clip.encode_dense(clip_x, "sclip").features, size=(16, 24),
                                             mode="bilinear")
        assert torch.allclose(guided.net(x), up, atol=1e-4)
        rebuilt = student_from_state(guided.metadata(), guided.state_dict()).eval()
        assert rebuilt.metadata()["clip"]["decoder"] == "guided" and torch.allclose(rebuilt(x), guided(x), atol=1e-5)
    with pytest.raises(maskclip.MaskCLIPError, match="decoder"):
        TrainConfig(clip_decoder="huge").validate()
    with pytest.raises(maskclip.MaskCLIPError, match="dense mode"):
        TrainConfig(clip_dense_mode="nope").validate()
