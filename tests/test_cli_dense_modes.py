"""Dense modes and segmentation options on the command line and in project settings."""
import json

import numpy as np
import pytest
from PIL import Image

from maskclip.cli import main
from maskclip.project import Project
from maskclip.settings import clip_spec


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    classes = tmp_path / "classes.txt"
    classes.write_text("road\ncar, automobile\n")
    return folder, classes


def test_segment_with_a_successor_mode_and_options(images, tmp_path):
    folder, classes = images
    out = tmp_path / "out"
    argv = ["segment", str(folder), "--classes-file", str(classes), "--out", str(out), "--model",
            "maskclip-tiny-vit", "--pretrained", "none", "--device", "cpu", "--scales", "64",
            "--dense-mode", "naclip", "--bg-threshold", "0.99", "--synonyms", "max", "--pamr", "--pamr-steps", "1",
            "--pamr-dilations", "1", "2", "--temperature", "50", "--no-quick-gelu"]
    assert main(argv) == 0
    assert json.loads((out / "classes.json").read_text())["classes"] == ["road", "car", "background"]
    assert np.array(Image.open(out / "a.png")).max() <= 2


def test_successor_mode_on_a_resnet_is_a_one_line_error(images, tmp_path, capsys):
    folder, classes = images
    argv = ["segment", str(folder), "--classes-file", str(classes), "--out", str(tmp_path / "out"), "--model",
            "maskclip-tiny-rn", "--pretrained", "none", "--device", "cpu", "--dense-mode", "sclip"]
    assert main(argv) == 2
    assert "needs a ViT" in capsys.readouterr().err
    argv[-2:] = ["--temperature", "-1"]
    with pytest.raises(SystemExit) as exit_info:  # refused while parsing, before any work
        main(argv)
    assert exit_info.value.code == 2
    assert "--temperature must be a positive finite number" in capsys.readouterr().err


def test_project_settings_hold_mode_and_options(images, tmp_path, capsys):
    folder, classes = images
    proj = tmp_path / "proj"
    assert main(["project", "init", str(proj), "--images", str(folder), "--classes-file", str(classes)]) == 0
    project = Project.open(proj)
    project.update_settings({"model": {"dense_mode": "sclip", "quick_gelu": False},
                             "method": {"temperature": 30.0, "key_smoothing": True, "bg_threshold": 0.2}})
    spec = clip_spec(project)
    assert spec["dense_mode"] == "sclip" and spec["quick_gelu"] is False
    assert spec["segment"]["temperature"] == 30.0 and spec["segment"]["key_smoothing"] is True
    other = clip_spec(project, dense_mode="naclip", options={"pamr": True})
    # mode-dependent settings belong to the stored mode; the others carry over
    assert "temperature" not in other["segment"] and "key_smoothing" not in other["segment"]
    assert other["segment"]["bg_threshold"] == 0.2 and other["segment"]["pamr"] is True
    capsys.readouterr()
    argv = ["project", "segment", str(proj), "--model", "maskclip-tiny-vit", "--pretrained", "none",
            "--scales", "64", "--device", "cpu", "--dense-mode", "clearclip", "--pamr-steps", "1"]
    assert main(argv) == 0
    assert "segmented 2 images" in capsys.readouterr().out
