"""`maskclip project init|import-labels|status|segment` and `maskclip export` through the real entry point."""
import json

import numpy as np
import pytest
from PIL import Image

from maskclip.cli import main
from maskclip.labels_io import read_label_image
from maskclip.project import Project

H, W = 24, 32
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(0)
    src, labels = tmp_path / "images", tmp_path / "labels"
    src.mkdir()
    labels.mkdir()
    for name in ("one", "two", "three"):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(src / f"{name}.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    for name in ("one", "two"):
        lab = rng.integers(0, 3, (H, W)).astype(np.uint8)
        lab[:3] = 255
        Image.fromarray(lab).save(labels / f"{name}.png")
    classes = tmp_path / "classes.txt"
    classes.write_text("road, street\ncar\n# comment\nsky\n")
    return tmp_path, src, labels, classes


def test_init_import_status_export(folders, capsys):
    tmp, src, labels, classes = folders
    proj = tmp / "proj"
    assert main(["project", "init", str(proj), "--images", str(src), "--classes-file", str(classes)]) == 1
    out, err = capsys.readouterr()  # broken.jpg is skipped and reported: exit 1
    assert "3 images, 3 classes" in out and "broken.jpg" in err
    p = Project.open(proj)
    assert p.prompts == [["road", "street"], ["car"], ["sky"]]

    assert main(["project", "import-labels", str(proj), str(labels), "--verified"]) == 0
    out, _ = capsys.readouterr()
    assert "imported labels for 2 of 3 images as verified" in out

    assert main(["project", "status", str(proj), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["images"] == 3 and status["labelled"] == 2 and status["verified_images"] == 2
    assert status["verified_fraction"] == pytest.approx(2 * (H - 3) / (3 * H))
    expected = {n: 0 for n in ("road", "car", "sky")}
    for name in ("one", "two"):
        lab = np.asarray(Image.open(labels / f"{name}.png"))
        for k, n in enumerate(("road", "car", "sky")):
            expected[n] += int((lab == k).sum())
    assert status["class_pixels"] == expected == status["class_verified_pixels"]
    assert main(["project", "status", str(proj)]) == 0
    text = capsys.readouterr().out
    assert "images: 3  labelled: 2" in text and "road" in text

    for fmt in ("voc", "coco", "index"):
        assert main(["export", str(proj), "--format", fmt, "--out", str(tmp / fmt), "--verified-only"]) == 0
        assert "exported 2 images" in capsys.readouterr().out
    np.testing.assert_array_equal(read_label_image(tmp / "voc" / "SegmentationClass" / "one.png"),
                                  np.asarray(Image.open(labels / "one.png")))
    assert (tmp / "coco" / "annotations.json").is_file() and (tmp / "index" / "classes.json").is_file()


def test_cli_errors_are_one_line_exit_2(folders, capsys):
    tmp, src, labels, _ = folders
    assert main(["project", "status", str(tmp / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "project file not found" in err
    assert main(["project", "init", str(tmp / "p"), "--images", str(src)]) == 1  # broken.jpg skipped
    assert main(["export", str(tmp / "p"), "--format", "voc", "--out", str(src)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["project", "import-labels", str(tmp / "p"), str(tmp / "nothing")]) == 2


def test_segment_respects_verified_pixels(folders, capsys):
    tmp, src, labels, classes = folders
    proj = tmp / "proj"
    assert main(["project", "init", str(proj), "--images", str(src), "--classes-file", str(classes)]) == 1
    assert main(["project", "import-labels", str(proj), str(labels), "--verified"]) == 0
    before = {i: Project.open(proj).get_labels_and_verified(i) for i in ("one", "two")}
    capsys.readouterr()
    argv = ["project", "segment", str(proj), "--model", "maskclip-tiny-vit", "--pretrained", "none",
            "--scales", "32", "--device", "cpu"]
    assert main(argv) == 0
    assert "segmented 3 images" in capsys.readouterr().out
    p = Project.open(proj)
    for image_id, (labels_before, verified) in before.items():
        after = p.get_labels(image_id)
        np.testing.assert_array_equal(after[verified], labels_before[verified])
        np.testing.assert_array_equal(p.get_verified(image_id), verified)
    assert p.has_labels("three") and p.history("three")[-1]["source"] == "maskclip maskclip-tiny-vit"
    assert any(p.cache_dir.iterdir())  # the feature cache lives in the project
    assert main(argv + ["--only-unlabelled"]) == 0
    assert "segmented 0 images (3 skipped" in capsys.readouterr().out


def test_accept_changes_of_stale_images(folders, capsys):
    tmp, src, labels, classes = folders
    proj = tmp / "proj"
    assert main(["project", "init", str(proj), "--images", str(src), "--classes-file", str(classes)]) == 1
    assert main(["project", "import-labels", str(proj), str(labels), "--verified"]) == 0
    p = Project.open(proj)
    one_labels = p.get_labels("one")
    for name in ("one", "two"):  # new content, same size
        Image.fromarray(np.full((H, W, 3), 7, np.uint8)).save(p.image_path(name))
    capsys.readouterr()
    assert main(["project", "status", str(proj), "--json"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)["stale"]) == ["one", "two"]

    assert main(["project", "accept-changes", str(proj), "one", "--keep-labels"]) == 0
    assert "accepted the new content of 1 image(s) (labels kept)" in capsys.readouterr().out
    assert main(["project", "accept-changes", str(proj)]) == 0  # all remaining stale images
    assert "accepted the new content of 1 image(s)" in capsys.readouterr().out
    p = Project.open(proj)
    assert not p.is_stale("one") and not p.is_stale("two")
    np.testing.assert_array_equal(p.get_labels("one"), one_labels)
    assert not p.has_labels("two") and p.history("two")[-1]["source"] == "image changed"

    assert main(["project", "accept-changes", str(proj), "nope"]) == 2
    assert "no image 'nope'" in capsys.readouterr().err
    Image.fromarray(np.zeros((H + 1, W, 3), np.uint8)).save(p.image_path("three"))
    p.set_labels("one", np.zeros((H, W), np.uint8))
    Image.fromarray(np.zeros((H + 2, W, 3), np.uint8)).save(p.image_path("one"))  # labelled, size changed
    assert main(["project", "accept-changes", str(proj), "--keep-labels"]) == 1
    out, err = capsys.readouterr()
    assert "one: " in err and "changed size" in err and "three" not in err  # three had no labels to keep
    assert "accepted the new content of 1 image(s) (labels kept); 1 could not be accepted" in out
    assert Project.open(proj).is_stale("one") and not Project.open(proj).is_stale("three")
