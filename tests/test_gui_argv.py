"""The annotator's child-process command lines (`maskclip train`, `... --resume`, `maskclip refine`) parse
with the real CLI parser, for every choice the training panel offers (issue 21 item 1).

The argv builders are plain functions (no QApplication, no display); their module imports qtpy, so this
file needs Qt bindings but not napari.
"""
from __future__ import annotations

import itertools
import json

import pytest

pytest.importorskip("qtpy")
pytest.importorskip("superqt")

from maskclip.cli import build_parser  # noqa: E402
from maskclip_napari import _training as T  # noqa: E402



def _devices():
    """The panel's device choices; "cuda" only where a GPU is present (the parser checks the device)."""
    import torch

    return ("auto", "cpu", "cuda") if torch.cuda.is_available() else ("auto", "cpu")


DEVICES = _devices()


def _train(tmp_path, **kw):
    base = dict(model="maskclip-tiny-vit", pretrained=None, device="cpu", iters=7, student="auto", batch_size=3,
                crop_size=64, base_size=96, imagenet=True)
    base.update(kw)
    return T.train_arguments(tmp_path / "proj", tmp_path / "proj" / "runs" / "r1", **base)


def _cases():
    """Every student x self-training choice, and every imagenet x weights x device choice (the rest cycled)."""
    students = [key for key, _ in T.student_choices()]
    fractions = [key for key, _, _ in T.SELF_TRAINING]
    others = list(itertools.product([True, False], [None, "openai", "/weights/ViT-B-16.pt"], DEVICES))
    firsts = list(itertools.product(students, fractions))
    n = max(len(firsts), len(others))
    return [(*firsts[i % len(firsts)], *others[i % len(others)]) for i in range(n)]


@pytest.mark.parametrize("student, self_training, imagenet, pretrained, device", _cases())
def test_train_arguments_parse(tmp_path, student, self_training, imagenet, pretrained, device):
    args = _train(tmp_path, student=student, imagenet=imagenet, pretrained=pretrained, device=device,
                  guided_fraction=T.GUIDED_FRACTIONS[self_training])
    parsed = build_parser().parse_args(args)
    assert parsed.command == "train"
    assert parsed.project == str((tmp_path / "proj").resolve())
    assert parsed.run == str((tmp_path / "proj" / "runs" / "r1").resolve())
    assert (parsed.model, parsed.device, parsed.iters, parsed.student) == ("maskclip-tiny-vit", device, 7, student)
    assert (parsed.batch_size, parsed.crop_size, parsed.base_size) == (3, 64, 96)
    assert parsed.pretrained == ("none" if pretrained is None else pretrained)
    assert parsed.no_imagenet is (not imagenet)
    assert parsed.guided_fraction == T.GUIDED_FRACTIONS[self_training]
    assert parsed.resume is False
    resumed = build_parser().parse_args([*args, "--resume"])
    assert resumed.resume is True and resumed.iters == 7


@pytest.mark.parametrize("device", DEVICES)
def test_resume_and_refine_arguments_parse(tmp_path, device):
    run = tmp_path / "proj" / "runs" / "r1"
    run.mkdir(parents=True)
    # a run started elsewhere (no launch file): resume from the run's saved configuration on `device`
    parsed = build_parser().parse_args(T.resume_arguments(tmp_path / "proj", run, device))
    assert (parsed.command, parsed.device, parsed.resume) == ("train", device, True)
    assert parsed.project == str((tmp_path / "proj").resolve()) and parsed.run == str(run.resolve())
    # a run the annotator started: its recorded command line plus --resume
    args = _train(tmp_path, device="cpu")
    (run / T.LAUNCH_FILE).write_text(json.dumps({"train": args}), encoding="utf-8")
    resumed = T.resume_arguments(tmp_path / "proj", run, device)
    assert resumed == [*args, "--resume"]
    assert build_parser().parse_args(resumed).device == "cpu"
    parsed = build_parser().parse_args(T.refine_arguments(tmp_path / "proj", run, device))
    assert (parsed.command, parsed.device) == ("refine", device)
    assert parsed.project == str((tmp_path / "proj").resolve()) and parsed.run == str(run.resolve())


def test_panel_students_are_the_trainers():
    from maskclip.train import STUDENT_NAMES

    choices = [key for key, _ in T.student_choices()]
    assert choices == ["auto", *STUDENT_NAMES] and "clip" in choices


def test_cuda_without_a_gpu_is_a_usage_error(tmp_path, capsys):
    """Today the parser itself refuses --device cuda on a machine without CUDA (exit code 2)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(_train(tmp_path, device="cuda"))
    assert exc.value.code == 2
    assert "no CUDA GPU is available" in capsys.readouterr().err
