"""Pins the public surface (issue 21 item 1): what a user or the annotator imports and calls.

Only public names are used, so these tests keep passing when modules move (maskclip.project as a package,
the annotator as panels, engine constants in their own modules). A change here is an API change.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_maskclip_all():
    import maskclip

    assert set(maskclip.__all__) == {
        "__version__", "MaskCLIPError", "SegmentOptions", "DENSE_MODE_NAMES", "load", "MaskCLIP",
        "DenseFeatures", "Segmentation", "DEFAULT_BACKGROUND", "DEFAULT_SCALES",
    }
    assert len(maskclip.__all__) == len(set(maskclip.__all__))
    for name in maskclip.__all__:
        assert getattr(maskclip, name) is not None, name


def test_project_module_names():
    from maskclip.project import ImageState, Project, ProjectBusyError, ProjectError, StaleImageError
    from maskclip import MaskCLIPError

    assert issubclass(ProjectError, MaskCLIPError)
    assert issubclass(StaleImageError, ProjectError)
    assert issubclass(ProjectBusyError, ProjectError)
    assert inspect.isclass(Project) and inspect.isclass(ImageState)


PROJECT_PUBLIC = {
    "accept_image_change", "add_class", "add_images", "background", "broken_images", "cache_dir",
    "class_colours", "class_index", "class_names", "class_pixel_counts", "class_progress", "classes",
    "clear_labels", "confidence_map", "confidence_scores", "create", "flush", "get_image", "get_labels", "get_labels_and_verified", "get_revision", "get_verified", "has_labels",
    "history", "image_ids", "image_path", "image_state", "import_labels", "is_stale", "list_images",
    "merge_prediction", "open", "project_labels", "prompts", "record", "remove_class", "rename_class",
    "reorder_classes", "restore_revision", "set_background", "set_class_colour", "set_class_synonyms",
    "set_classes", "set_labels", "set_verified", "settings", "skipped_images", "status", "update_settings",
}
PROJECT_PROPERTIES = {"background", "cache_dir", "class_colours", "class_names", "classes", "image_ids", "prompts",
                      "settings", "skipped_images"}


def test_project_public_names():
    from maskclip.project import Project

    assert {n for n in dir(Project) if not n.startswith("_")} == PROJECT_PUBLIC
    props = {n for n in dir(Project) if isinstance(inspect.getattr_static(Project, n), property)}
    assert props == PROJECT_PROPERTIES
    for dunder in ("__len__", "__contains__", "__enter__", "__exit__"):
        assert dunder in vars(Project) or any(dunder in vars(c) for c in Project.__mro__[1:-1]), dunder


def _params(func) -> str:
    """'a, b, *, c' (self / cls dropped): names and which are keyword-only."""
    out, star = [], False
    for name, p in inspect.signature(func).parameters.items():
        if name in ("self", "cls"):
            continue
        if p.kind is p.KEYWORD_ONLY and not star:
            out.append("*")
            star = True
        out.append(name)
    return ", ".join(out)


@pytest.mark.parametrize("name, params", [
    ("create", "root, images, classes, *, copy, recursive, background, settings, history"),
    ("open", "root"),
    ("get_labels", "image_id, *, allow_stale"),
    ("get_verified", "image_id, *, allow_stale"),
    ("get_labels_and_verified", "image_id, *, allow_stale"),
    ("set_labels", "image_id, labels, verified, *, mark_changed_verified, source, base"),  # base: issue 16
    ("set_verified", "image_id, mask, *, source, base"),
    ("merge_prediction", "image_id, labels, confidence, *, class_names, min_confidence, source"),
    ("import_labels", "source, *, verified, format"),
    ("project_labels", "labels, class_names"),
    ("add_images", "images, *, recursive"),
    ("add_class", "name, synonyms, colour"),
    ("remove_class", "name"),
    ("rename_class", "old, new"),
    ("reorder_classes", "names"),
    ("set_classes", "classes"),
    ("set_class_synonyms", "name, synonyms"),
    ("set_class_colour", "name, colour"),
    ("set_background", "prompts"),
    ("update_settings", "update"),
    ("history", "image_id"),
    ("get_revision", "image_id, rev"),
    ("restore_revision", "image_id, rev"),
    ("clear_labels", "image_id"),
    ("accept_image_change", "image_id, keep_labels"),
    ("is_stale", "image_id"),
    ("image_state", "image_id"),
    ("list_images", ""),
    ("status", ""),
    ("broken_images", ""),
    ("class_pixel_counts", "verified_only"),
    ("flush", ""),
])
def test_project_signatures(name, params):
    from maskclip.project import Project

    assert _params(getattr(Project, name)) == params


def test_train_exports():
    import maskclip.train as train

    assert set(train.__all__) == {
        "AugmentConfig", "TrainItem", "RunFolder", "TrainConfig", "TrainResult", "load_student", "train",
        "STUDENTS", "STUDENT_NAMES", "CLIP_STUDENT", "Student", "build_student", "random_class_embeddings", "IGNORE", "TeacherCache",
        "guided_target", "self_training_target",
    }
    for name in train.__all__:
        assert hasattr(train, name), name


# --- command line ---------------------------------------------------------------------------------------

SEGMENT_METHOD = [
    "--bg-threshold", "--dense-mode", "--device", "--key-smoothing", "--ks-threshold", "--ks-variant", "--model",
    "--no-key-smoothing", "--no-pamr", "--no-prompt-denoising", "--no-quick-gelu", "--no-window-norm", "--pamr",
    "--pamr-dilations", "--pamr-steps", "--pd-threshold", "--pretrained", "--prompt-denoising", "--quick-gelu",
    "--scale-fusion", "--stride", "--synonyms", "--temperature", "--window", "--window-norm",
]
HELP = ["-h", "--help"]
CLI = {
    "": (["--version"], []),  # --version: issue 17
    "eval": (["--classes-json", "--gt", "--ignore-index", "--pred"], []),
    "export": (["--format", "--no-images", "--out", "--overwrite", "--val-fraction", "--verified-only"], ["dir"]),
    "project": ([], []),
    "project accept-changes": (["--keep-labels"], ["dir", "image_ids"]),
    "project import-labels": (["--format", "--verified"], ["dir", "labels"]),
    "project init": (["--background", "--classes-file", "--images", "--recursive", "--reference"], ["dir"]),
    "project segment": (SEGMENT_METHOD + ["--image", "--learn-from-verified", "--learner", "--min-confidence",
                                          "--no-learn-from-verified", "--only-unlabelled", "--scales", "--weight",
                                          "--no-amp"],  # issue 18: autocast on CUDA
                        ["dir"]),
    "project status": (["--json"], ["dir"]),
    "refine": (["--device", "--min-confidence", "--run", "--run-dir", "--no-amp"], ["project"]),
    "segment": (SEGMENT_METHOD + ["--background", "--cache-dir", "--classes-file", "--out",
                                  "--overwrite",  # issue 16.3
                                  "--recursive", "--scales"], ["inputs"]),
    "train": (SEGMENT_METHOD + ["--base-size", "--batch-size", "--checkpoint-every", "--confidence-threshold",
                                "--crop-size", "--guided-fraction", "--iters", "--log-every", "--lr", "--no-amp",
                                "--no-imagenet", "--resume", "--run", "--run-dir", "--seed", "--self-train-start",
                                "--self-train-threshold", "--student", "--workers",
                                "--freeze-blocks", "--optimizer",  # issue 18
                                "--clip-decoder", "--clip-dense-mode", "--confidence-keep", "--ema-decay",
                                "--self-train-balance", "--self-train-keep-teacher"],
              ["project"]),
}


def _walk(parser: argparse.ArgumentParser, prefix: tuple = ()) -> dict:
    options = sorted(s for a in parser._actions for s in a.option_strings)
    positional = [a.dest for a in parser._actions
                  if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
    out = {" ".join(prefix): (options, positional)}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(_walk(sub, prefix + (name,)))
    return out


def test_cli_commands_and_flags():
    from maskclip.cli import build_parser

    got = _walk(build_parser())
    assert set(got) == set(CLI)
    for command, (options, positional) in CLI.items():
        assert got[command] == (sorted(options + HELP), positional), command


@pytest.mark.parametrize("argv", [
    ["--help"], ["segment", "--help"], ["eval", "--help"], ["project", "--help"], ["project", "init", "--help"],
    ["project", "segment", "--help"], ["project", "status", "--help"], ["project", "import-labels", "--help"],
    ["project", "accept-changes", "--help"], ["export", "--help"], ["train", "--help"], ["refine", "--help"],
])
def test_cli_help_exits_0(argv, capsys):
    from maskclip.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: maskclip" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    [], ["no-such-command"], ["project"], ["project", "no-such"], ["segment", "x.png", "--no-such-flag"],
    ["project", "status"], ["eval", "--pred", "a"], ["project", "segment", "d", "--dense-mode", "no-such-mode"],
])
def test_cli_usage_errors_exit_2(argv, capsys):
    from maskclip.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: maskclip" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["project", "status", "{missing}"],
    ["project", "status", "{missing}", "--json"],
    ["export", "{missing}", "--format", "index", "--out", "{out}"],
    ["project", "accept-changes", "{missing}"],
])
def test_cli_missing_project_exits_2(argv, tmp_path, capsys):
    """A MaskCLIPError (here: no project at that path) is one line on stderr and exit code 2."""
    from maskclip.cli import main

    argv = [a.format(missing=tmp_path / "nothing", out=tmp_path / "out") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"maskclip {argv[0]}: error: ")
    assert "Traceback" not in err


def test_python_dash_m_maskclip_is_the_cli():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-m", "maskclip", "--help"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("usage: maskclip")
    run = subprocess.run([sys.executable, "-m", "maskclip", "no-such-command"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 2


# --- napari plugin manifest --------------------------------------------------------------------------------

def _python_names() -> list[str]:
    import yaml

    manifest = yaml.safe_load((ROOT / "maskclip_napari" / "napari.yaml").read_text(encoding="utf-8"))
    return [c["python_name"] for c in manifest["contributions"]["commands"]]


def test_napari_manifest_commands():
    assert _python_names() == [
        "maskclip_napari._annotator:AnnotatorWidget", "maskclip_napari._reader:get_reader",
        "maskclip_napari._writer:write_labels", "maskclip_napari._sample_data:sample_scenes",
    ]


@pytest.mark.parametrize("python_name", _python_names())
def test_napari_python_names_resolve(python_name):
    pytest.importorskip("napari")
    module, _, attr = python_name.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))
