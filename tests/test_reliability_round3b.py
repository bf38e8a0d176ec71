"""Reliability round 3, second part (issue 16, items 4, 5, 7, 8, 10 and the rest of 11): symlinked project
folders refused, only regular files hashed or read, project settings and names checked, one bad image or file
name never stops a batch, run folders checked on --resume and refine, class names and prompt counts bounded."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskclip.cli import main
from maskclip.errors import MaskCLIPError
from maskclip.project import Project, ProjectError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
REPO = Path(__file__).resolve().parents[1]


def _images(folder: Path, names=("img",), size=(12, 16)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def _project(tmp_path, copy=True, names=("img",)) -> Project:
    return Project.create(tmp_path / "proj", _images(tmp_path / "src", names), ["road", "car"], copy=copy)


# ---------------------------------------------------------------------------------------------- item 4
def test_symlinked_annotation_folder_is_refused_before_any_write(tmp_path):
    project = _project(tmp_path)
    project.set_labels("img", np.ones((12, 16), np.uint8))
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "r000001-deadbeef.labels.png"  # a project-named file outside the project
    victim.write_bytes(b"user data")
    ann = project.root / "annotations" / "img"
    import shutil

    shutil.rmtree(ann)
    ann.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ProjectError, match="symbolic link") as info:
        project.set_labels("img", np.zeros((12, 16), np.uint8))
    assert str(ann) in str(info.value)
    with pytest.raises(ProjectError, match="symbolic link"):
        Project.open(project.root).set_labels("img", np.zeros((12, 16), np.uint8))
    assert sorted(p.name for p in outside.iterdir()) == [victim.name]
    assert victim.read_bytes() == b"user data"


@pytest.mark.parametrize("sub", ["annotations", "images", "cache"])
def test_symlinked_project_subfolder_is_refused_at_open(tmp_path, sub):
    project = _project(tmp_path)
    outside = tmp_path / "outside"
    (project.root / sub).rename(outside)
    (project.root / sub).symlink_to(outside, target_is_directory=True)
    with pytest.raises(ProjectError, match="symbolic link") as info:
        Project.open(project.root)
    assert str(project.root / sub) in str(info.value)
    if sub != "cache":  # an instance opened before the link was made refuses before writing there
        with pytest.raises(ProjectError, match="symbolic link"):
            if sub == "annotations":
                project.set_labels("img", np.ones((12, 16), np.uint8))
            else:
                project.add_images(_images(tmp_path / "more", ("new",)))
        assert sorted(p.name for p in outside.iterdir()) == sorted(p.name for p in (project.root / sub).iterdir())
        assert not any("new" in p.name for p in outside.iterdir()) and not (outside / "img").exists() \
            or sub == "images"


# ---------------------------------------------------------------------------------------------- item 5
_FIFO_SCRIPT = r"""
import os, sys
from pathlib import Path
import numpy as np
from PIL import Image
from maskclip.project import Project
from maskclip.project import files
from maskclip.errors import ImageReadError

tmp = Path(sys.argv[1])
src = tmp / "src"; src.mkdir()
Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "img.png")
p = Project.create(tmp / "proj", src, ["a"], copy=False)
path = p.image_path("img")
path.unlink()
os.mkfifo(path)
assert p.is_stale("img")
st = p.status()
assert "img" in st["stale"], st
try:
    files.read_image(path)
except ImageReadError as exc:
    print("read:", exc)
for bad in (path, Path("/dev/zero")):
    try:
        files.sha256_file(bad)
    except OSError as exc:
        print("hash:", exc)
    else:
        raise SystemExit("hashed a non-regular file")
# a FIFO in an imported folder is skipped with a reason, not read
os.mkfifo(src / "pipe.png")
report = p.add_images(src / "pipe.png")
print("add:", report.skipped)
assert report.added == [] and report.skipped
print("OK")
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_and_device_images_are_never_read(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO),
                                                          os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _FIFO_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr
    assert "regular file" in proc.stdout


# ---------------------------------------------------------------------------------------------- item 8
@pytest.mark.parametrize("settings, field", [
    ({"model": 5}, "model"),
    ({"model": {"name": 5}}, "model.name"),
    ({"method": {"scales": "abc"}}, "method.scales"),
    ({"method": {"scales": [0]}}, "method.scales"),
    ({"method": {"pd_threshold": "x"}}, "method.pd_threshold"),
    ({"method": {"pd_threshold": 3.0}}, "method.pd_threshold"),
    ({"method": {"key_smoothing": "yes"}}, "method.key_smoothing"),
    ({"learn": 5}, "learn"),
    ({"learn": {"weight": "x"}}, "learn.weight"),
    ({"learn": {"from_verified": 2}}, "learn.from_verified"),
])
def test_project_settings_of_wrong_types_are_named(tmp_path, settings, field):
    project = _project(tmp_path)
    with pytest.raises(ProjectError) as info:
        project.update_settings(settings)
    assert "project.json" in str(info.value) and field in str(info.value)
    assert Project.open(project.root).settings == project.settings  # nothing was saved
    path = project.root / "project.json"
    meta = json.loads(path.read_text())
    meta["settings"].update(settings)
    path.write_text(json.dumps(meta))
    with pytest.raises(ProjectError) as info:
        Project.open(project.root)
    assert str(path) in str(info.value) and field in str(info.value)


def test_project_settings_cli_reports_wrong_types(tmp_path, capsys):
    project = _project(tmp_path)
    path = project.root / "project.json"
    meta = json.loads(path.read_text())
    meta["settings"]["method"]["scales"] = "abc"
    path.write_text(json.dumps(meta))
    assert main(["project", "status", str(project.root)]) == 2
    err = capsys.readouterr().err
    assert "method.scales" in err and "Traceback" not in err


def test_valid_settings_still_accepted(tmp_path):
    project = _project(tmp_path)
    project.update_settings({"method": {"scales": [224, 336], "pd_threshold": 0.7, "key_smoothing": False},
                             "learn": {"from_verified": True, "weight": 0.3},
                             "model": {"pretrained": None, "quick_gelu": True},
                             "annotator": {"device": "cpu", "last_image": "img"}})
    assert Project.open(project.root).settings["learn"]["weight"] == 0.3


def test_nul_byte_in_image_name_is_skipped_and_reported(tmp_path):
    project = _project(tmp_path)
    report = project.add_images([str(tmp_path / "src" / "img.png"), str(tmp_path / "bad\x00name.png")])
    assert report.added == [] and any("bad" in p for p, _ in report.skipped)
    path = project.root / "images.json"
    data = json.loads(path.read_text())
    data["images"][0]["file"] = "images/a\x00b.png"
    path.write_text(json.dumps(data))
    with pytest.raises(ProjectError, match="images.json"):
        Project.open(project.root)


def test_reserved_device_names_and_leading_dash_never_become_ids(tmp_path):
    names = ("CON", "nul", "aux.tar", "com1", "LPT9", "-rf", "prn.x")
    project = _project(tmp_path, names=names)
    for image_id in project.image_ids:
        stem = image_id.split(".")[0].upper()
        assert stem not in {"CON", "NUL", "AUX", "PRN", "COM1", "LPT9"} and not image_id.startswith("-")
    assert sorted(project.image_ids) == sorted(["_CON", "_nul", "_aux.tar", "_com1", "_LPT9", "_-rf", "_prn.x"])
    # existing projects keep their ids readable
    path = project.root / "images.json"
    data = json.loads(path.read_text())
    data["images"][0]["id"] = "CON"
    path.write_text(json.dumps(data))
    assert "CON" in Project.open(project.root).image_ids


# ---------------------------------------------------------------------------------------------- item 10
def test_one_bad_image_in_the_staleness_check_does_not_stop_the_batch(tmp_path):
    from maskclip.batch import Prediction, run_batch

    project = _project(tmp_path, names=("a", "b", "c"))
    project.set_labels("b", np.ones((12, 16), np.uint8))
    (project.root / "annotations" / "b" / "state.json").write_text("{broken")
    report = run_batch(project, project.image_ids,
                       lambda i: Prediction(np.zeros((12, 16), np.uint8)), source="test",
                       skip=lambda i: project.is_stale(i))
    assert report.merged == ["a", "c"] and [i for i, _ in report.failed] == ["b"]
    assert "state.json" in report.failed[0][1]


def test_over_long_file_name_is_skipped_not_fatal(tmp_path, capsys):
    src = _images(tmp_path / "src", names=("ok", "x" * 240))
    assert main(["project", "init", str(tmp_path / "proj"), "--images", str(src)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "x" * 240 in captured.err
    project = Project.open(tmp_path / "proj")
    assert "ok" in project.image_ids


# ---------------------------------------------------------------------------------------------- item 7
TRAIN = ["--iters", "2", "--batch-size", "2", "--student", "lraspp_mobilenet_v3_large", "--no-imagenet",
         "--crop-size", "48", "--base-size", "48", "--device", "cpu", "--checkpoint-every", "1", "--log-every", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A project and a finished 2-iteration run (tiny random CLIP, LR-ASPP student), made once."""
    from test_train import make_project

    tmp = tmp_path_factory.mktemp("trained")
    project = make_project(tmp)
    run = tmp / "run"
    assert main(["train", str(project.root), "--run", str(run), *TRAIN]) == 0
    return project.root, run


@pytest.fixture
def run_copy(trained, tmp_path):
    import shutil

    root, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return root, copy


def _train(root, run, *extra):
    return main(["train", str(root), "--run", str(run), *TRAIN, "--iters", "3", "--resume", *extra])


@pytest.mark.parametrize("content, problem", [
    ("{not json", "config.json"),
    ('["a list"]', "config.json"),
    ('{"classes": []}', "'train'"),
    ('{"train": {"iters": "many"}}', "train.iters"),
    ('{"train": {"lr": [1]}}', "train.lr"),
    ('{"train": {"augment": {"crop_size": "x"}}}', "train.augment.crop_size"),
    ('{"train": {"augment": 5}}', "train.augment"),
])
def test_resume_with_a_bad_config_names_the_file_and_field(run_copy, capsys, content, problem):
    root, run = run_copy
    (run / "config.json").write_text(content)
    assert _train(root, run) == 2
    err = capsys.readouterr().err
    assert str(run / "config.json") in err and problem in err and "Traceback" not in err


def test_resume_without_config_is_an_error(run_copy, capsys):
    root, run = run_copy
    (run / "config.json").unlink()
    assert _train(root, run) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and "nothing to resume" in err


def test_resume_survives_corrupt_metrics_signature_and_pseudo_labels(run_copy, capsys):
    root, run = run_copy
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 1, "lo\n[1, 2]\n')
    (run / "teacher" / "signature.json").write_text("{garbage")
    assert _train(root, run) == 0, capsys.readouterr().err
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["iteration"] for ln in lines] == [1, 2, 3]
    # a pseudo-label file of the wrong shape or values is recomputed, not trained on
    npz = sorted((run / "teacher").glob("*.npz"))
    np.savez_compressed(npz[0], labels=np.zeros((3, 3), np.uint8), fingerprint=np.array("x"))
    with np.load(npz[1]) as data:
        fp = str(data["fingerprint"])
        shape = data["labels"].shape
    np.savez_compressed(npz[1], labels=np.full(shape, 77, np.uint8), fingerprint=np.array(fp))
    capsys.readouterr()
    assert main(["train", str(root), "--run", str(run), *TRAIN, "--iters", "4", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "computing MaskCLIP pseudo labels for 2 image(s)" in err, err


def test_teacher_cache_reading_a_wrong_file_names_it(tmp_path):
    from maskclip.train.targets import TeacherCache

    cache = TeacherCache(tmp_path / "teacher", {"a": 1}).open()
    cache.put("k", np.zeros((4, 5), np.uint8), fingerprint="f")
    assert cache.has("k", "f", shape=(4, 5), n_classes=2) and not cache.has("k", "f", shape=(5, 4), n_classes=2)
    np.savez_compressed(cache.path("k"), labels=np.full((4, 5), 9, np.uint8), fingerprint=np.array("f"))
    assert not cache.has("k", "f", shape=(4, 5), n_classes=2)
    with pytest.raises(MaskCLIPError, match=str(cache.path("k").name)):
        cache.get("k", "f", shape=(4, 5), n_classes=2)


def test_refine_with_a_damaged_student_record_names_the_file(run_copy, capsys):
    import torch

    root, run = run_copy
    record = torch.load(run / "student.pt", weights_only=True)
    record["student"] = {"name": 5}
    torch.save(record, run / "student.pt")
    assert main(["refine", str(root), "--run", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "student.pt" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------- item 11
@pytest.mark.parametrize("name", ["car\nroad", "tab\tname", "nul\x00", "bell\x07", "del\x7f"])
def test_project_class_names_refuse_control_characters(tmp_path, name):
    project = _project(tmp_path)
    for call in (lambda: project.add_class(name), lambda: project.rename_class("road", name),
                 lambda: project.set_class_synonyms("road", [name]), lambda: project.set_background([name]),
                 lambda: project.set_classes(["road", name])):
        with pytest.raises(ProjectError, match="control character"):
            call()
    assert project.class_names == ["road", "car"]


def test_synonym_and_background_prompt_counts_are_capped():
    from maskclip.prompts import MAX_BACKGROUND_PROMPTS, MAX_SYNONYMS, normalize_classes, prompt_rows

    assert (MAX_SYNONYMS, MAX_BACKGROUND_PROMPTS) == (64, 256)
    many = [f"s{i}" for i in range(20_000)]
    with pytest.raises(MaskCLIPError, match="at most 64"):
        normalize_classes([["car", *many]])
    with pytest.raises(MaskCLIPError, match="at most 256"):
        prompt_rows(["car"], [f"b{i}" for i in range(5_000)])
    prompt_rows([["car", *many[:63]]], [f"b{i}" for i in range(256)])  # the caps themselves are fine


def test_project_caps_synonyms_and_background(tmp_path):
    project = _project(tmp_path)
    with pytest.raises(ProjectError, match="at most 63"):
        project.set_class_synonyms("road", [f"s{i}" for i in range(64)])
    with pytest.raises(ProjectError, match="at most 256"):
        project.set_background([f"b{i}" for i in range(257)])


def test_classes_file_with_too_many_synonyms_is_one_line(tmp_path, capsys):
    classes = tmp_path / "classes.txt"
    classes.write_text("car, " + ", ".join(f"s{i}" for i in range(20_000)) + "\n")
    assert main(["project", "init", str(tmp_path / "proj"), "--images", str(_images(tmp_path / "src")),
                 "--classes-file", str(classes)]) == 2
    err = capsys.readouterr().err
    assert "at most 64" in err and "Traceback" not in err
