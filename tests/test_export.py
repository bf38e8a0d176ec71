"""Dataset export (voc, coco, index) and import back: labels and class names round-trip exactly."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from maskclip.export import ExportError, export_project, open_labels
from maskclip.labels_io import read_label_image, voc_palette
from maskclip.project import Project

H, W = 20, 24
# pycocotools' C decoder trips numpy 2's __array__ deprecation; harmless library noise
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
CLASSES = ["road", ["car", "vehicle"], "sky", "tree"]


@pytest.fixture
def project(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(src / "img_a.png")
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(src / "img_b.jpg")
    Image.fromarray(rng.integers(0, 65535, (H, W), dtype=np.uint16)).save(src / "img_c.png")  # 16-bit grey
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(src / "unlabelled.png")
    p = Project.create(tmp_path / "proj", src, CLASSES)
    for image_id in ("img_a", "img_b", "img_c"):
        labels = rng.integers(0, 4, (H, W)).astype(np.uint8)
        labels[rng.random((H, W)) < 0.2] = 255
        verified = rng.random((H, W)) < 0.5
        p.set_labels(image_id, labels, verified=verified)
    p.set_verified("img_c", np.zeros((H, W), bool))
    return p


def _roundtrip(project, tmp_path, fmt, images_sub, **kwargs):
    out = tmp_path / f"out_{fmt}"
    report = export_project(project, out, fmt, **kwargs)
    fresh = Project.create(tmp_path / f"back_{fmt}", [project.image_path(i) for i in report.exported]
                           if images_sub is None else out / images_sub)
    imported = fresh.import_labels(out)
    return report, fresh, imported


@pytest.mark.parametrize("fmt,images_sub", [("voc", "JPEGImages"), ("coco", "images"), ("index", None)])
def test_export_import_roundtrip(project, tmp_path, fmt, images_sub):
    report, fresh, imported = _roundtrip(project, tmp_path, fmt, images_sub)
    assert sorted(report.exported) == ["img_a", "img_b", "img_c"]  # unlabelled image left out
    assert fresh.class_names == project.class_names
    assert sorted(imported.added) == ["img_a", "img_b", "img_c"] and imported.skipped == []
    assert imported.new_classes == project.class_names
    for image_id in report.exported:
        np.testing.assert_array_equal(fresh.get_labels(image_id), project.get_labels(image_id))
        assert fresh.get_image(image_id).shape[:2] == (H, W)
        assert not fresh.get_verified(image_id).any()  # imported without --verified


def test_export_import_verified_only(project, tmp_path):
    out = tmp_path / "out"
    report = export_project(project, out, "index", verified_only=True)
    assert sorted(report.exported) == ["img_a", "img_b"]  # img_c has no verified pixel
    back = open_labels(out)
    assert back.class_names == project.class_names
    for image_id in report.exported:
        labels, verified = project.get_labels_and_verified(image_id)
        np.testing.assert_array_equal(back.read(image_id), np.where(verified, labels, 255))
    # importing as verified into the original project keeps exactly the verified pixels verified
    project.import_labels(out, verified=True)
    for image_id in report.exported:
        v = project.get_verified(image_id)
        np.testing.assert_array_equal(v, project.get_labels(image_id) != 255)


def test_voc_layout(project, tmp_path):
    out = tmp_path / "voc"
    report = export_project(project, out, "voc", val_fraction=0.5)
    seg = out / "SegmentationClass" / "img_a.png"
    with Image.open(seg) as im:
        assert im.mode == "P"
        palette = im.getpalette()[:3 * 4]
    assert [tuple(palette[i:i + 3]) for i in range(0, 12, 3)] == voc_palette(4)
    np.testing.assert_array_equal(read_label_image(seg), project.get_labels("img_a"))
    for name in ("img_a", "img_b", "img_c"):
        with Image.open(out / "JPEGImages" / f"{name}.jpg") as im:
            assert im.format == "JPEG" and im.size == (W, H)
    assert (out / "JPEGImages" / "img_b.jpg").read_bytes() == project.image_path("img_b").read_bytes()
    sets = {n: (out / "ImageSets" / "Segmentation" / f"{n}.txt").read_text().split() for n in ("train", "val", "trainval")}
    assert sorted(sets["train"] + sets["val"]) == sets["trainval"] == ["img_a", "img_b", "img_c"]
    assert sets == {k: v for k, v in report.splits.items()}
    assert (out / "labels.txt").read_text().split("\n")[:4] == ["road", "car", "sky", "tree"]
    assert json.loads((out / "classes.json").read_text())["classes"] == ["road", "car", "sky", "tree"]


def test_coco_layout(project, tmp_path):
    out = tmp_path / "coco"
    export_project(project, out, "coco")
    data = json.loads((out / "annotations.json").read_text())
    assert [c["name"] for c in data["categories"]] == ["road", "car", "sky", "tree"]
    assert [c["id"] for c in data["categories"]] == [1, 2, 3, 4]
    image = next(im for im in data["images"] if im["file_name"].startswith("img_a"))
    anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
    labels = project.get_labels("img_a")
    assert sorted(a["category_id"] - 1 for a in anns) == sorted(set(np.unique(labels)) - {255})
    for a in anns:
        assert isinstance(a["segmentation"]["counts"], str) and a["segmentation"]["size"] == [H, W]
        rle = dict(a["segmentation"], counts=a["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_util.decode([rle])[:, :, 0].astype(bool), labels == a["category_id"] - 1)
        assert a["area"] == int((labels == a["category_id"] - 1).sum())
    assert (out / "images" / image["file_name"]).is_file()


def test_open_foreign_coco_polygons_and_uncompressed_rle(tmp_path):
    mask = np.zeros((H, W), np.uint8)
    mask[2:6, 3:9] = 1
    counts, value, run = [], 0, 0
    for v in mask.flatten(order="F"):  # uncompressed RLE: column-major run lengths starting with zeros
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    data = {
        "images": [{"id": 7, "file_name": "sub/frame.jpg", "height": H, "width": W}],
        "categories": [{"id": 30, "name": "person"}, {"id": 12, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 30, "iscrowd": 1, "segmentation": {"size": [H, W], "counts": counts}},
            {"id": 2, "image_id": 7, "category_id": 12, "iscrowd": 0,
             "segmentation": [[10.0, 10.0, 20.0, 10.0, 20.0, 18.0, 10.0, 18.0]]},
        ],
    }
    (tmp_path / "foreign.json").write_text(json.dumps(data))
    labels_set = open_labels(tmp_path / "foreign.json")
    assert labels_set.class_names == ["dog", "person"] and labels_set.keys == ["sub/frame"]
    labels = labels_set.read("sub/frame")
    assert (labels[2:6, 3:9] == 1).all() and labels[12:16, 12:18].min() == 0 and labels[0, 0] == 255


def test_import_plain_folder_by_index_and_by_name(project, tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    lab = np.full((H, W), 255, np.uint8)
    lab[:5] = 3
    Image.fromarray(lab).save(folder / "unlabelled.png")  # grey PNG, values = project indices
    Image.fromarray(np.full((H, W), 9, np.uint8)).save(folder / "img_a.png")  # out of range
    report = project.import_labels(folder)
    assert report.added == ["unlabelled"] and report.skipped[0][0] == "img_a" and "4 classes" in report.skipped[0][1]
    assert sorted(report.missing) == ["img_b", "img_c"]
    np.testing.assert_array_equal(project.get_labels("unlabelled"), lab)
    # a folder with classes.json is mapped by class name (and new names are added)
    (folder / "img_a.png").unlink()
    (folder / "classes.json").write_text(json.dumps({"classes": ["grass", "road", "x", "tree"]}))
    report = project.import_labels(folder, verified=True)
    assert report.new_classes == ["grass", "x"]
    got = project.get_labels("unlabelled")
    assert (got[:5] == project.class_index("tree")).all() and (got[5:] == 255).all()


def test_import_napari_tiff_and_nested_duplicate_stems(tmp_path):
    import tifffile

    src = tmp_path / "src"
    for sub in ("left", "right"):
        (src / sub).mkdir(parents=True)
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(src / sub / "frame.png")
    p = Project.create(tmp_path / "proj", src, ["a", "b"], recursive=True)
    labels_dir = tmp_path / "labels"
    for k, sub in enumerate(("left", "right")):
        (labels_dir / sub).mkdir(parents=True)
        tifffile.imwrite(labels_dir / sub / "frame.tif", np.full((1, H, W), k, np.uint32))  # napari's writer
    report = p.import_labels(labels_dir)
    assert sorted(report.added) == ["left__frame", "right__frame"]
    assert (p.get_labels("left__frame") == 0).all() and (p.get_labels("right__frame") == 1).all()


def test_import_respects_verified_pixels_unless_verified(project, tmp_path):
    out = tmp_path / "idx"
    folder = out
    folder.mkdir()
    Image.fromarray(np.zeros((H, W), np.uint8)).save(folder / "img_a.png")
    before, verified = project.get_labels_and_verified("img_a")
    project.import_labels(folder)
    after = project.get_labels("img_a")
    np.testing.assert_array_equal(after[verified], before[verified])
    assert (after[~verified] == 0).all()


def test_export_refuses_non_empty_output_and_bad_format(project, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ExportError, match="not empty"):
        export_project(project, out, "voc")
    export_project(project, out, "index", overwrite=True)
    assert (out / "keep.txt").exists() and (out / "img_a.png").exists()
    with pytest.raises(ExportError, match="unknown export format"):
        export_project(project, tmp_path / "o2", "yolo")


def test_stale_images_are_not_exported(project, tmp_path):
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(project.image_path("img_a"))
    report = export_project(Project.open(project.root), tmp_path / "out", "index")
    assert "img_a" not in report.exported and report.skipped[0][0] == "img_a"


CAMVID = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "camvid"


@pytest.mark.slow
@pytest.mark.skipif(not (CAMVID / "val" / "images").is_dir(), reason="../shared/data/camvid not present")
def test_camvid_verified_labels_export_identical_to_ground_truth(tmp_path):
    """Issue 3 item 5, through the CLI: all 101 CamVid val images with their labels imported as verified."""
    from maskclip.cli import main

    proj = tmp_path / "proj"
    val = CAMVID / "val"
    assert main(["project", "init", str(proj), "--images", str(val / "images"), "--reference",
                 "--classes-file", str(CAMVID / "classes.json")]) == 0
    assert main(["project", "import-labels", str(proj), str(val / "labels"), "--verified"]) == 0
    for fmt in ("voc", "coco"):
        assert main(["export", str(proj), "--format", fmt, "--out", str(tmp_path / fmt), "--no-images"]) == 0
    p = Project.open(proj)
    classes = json.loads((CAMVID / "classes.json").read_text())
    assert p.class_names == classes["classes"] and p.class_colours == [tuple(c) for c in classes["colors"]]
    images = sorted((val / "images").glob("*.jpg"))
    assert len(p) == len(images) and p.status()["verified_images"] == len(images)
    coco = open_labels(tmp_path / "coco" / "annotations.json")
    assert coco.class_names == classes["classes"] and len(coco.keys) == len(images)
    for path in images:
        truth = np.asarray(Image.open(val / "labels" / f"{path.stem}.png"))
        np.testing.assert_array_equal(read_label_image(tmp_path / "voc" / "SegmentationClass" / f"{path.stem}.png"),
                                      truth)
        np.testing.assert_array_equal(coco.read(path.stem), truth)


def test_voc_val_split_is_never_empty_when_asked_for(tmp_path):
    """A small export with a validation share gets at least one val image; share 0 gets none."""
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("x1", "x2"):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(src / f"{name}.png")
    project = Project.create(tmp_path / "proj", src, ["a"])
    for image_id in project.image_ids:
        project.set_labels(image_id, np.zeros((8, 8), np.uint8))
    report = export_project(project, tmp_path / "voc", "voc", val_fraction=0.01)
    assert len(report.splits["val"]) == 1 and len(report.splits["train"]) == 1
    report = export_project(project, tmp_path / "voc0", "voc", val_fraction=0.0)
    assert report.splits["val"] == [] and len(report.splits["train"]) == 2


def test_coco_without_pycocotools_says_which_extra(monkeypatch):
    """Issue 17 item 3: pycocotools is the `coco` extra; without it COCO export/import is a clear error."""
    import sys

    from maskclip.errors import MaskCLIPError
    from maskclip.export import coco_mask_api

    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(MaskCLIPError, match=r'maskclip-napari\[coco\]'):
        coco_mask_api()
