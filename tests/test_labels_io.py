"""Index PNGs, label TIFFs (napari's writer) and classes.json files."""
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from maskclip.errors import ImageReadError, MaskCLIPError
from maskclip.labels_io import (
    read_classes_json,
    read_label_image,
    voc_palette,
    write_classes_json,
    write_index_png,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


# ---------------------------------------------------------------- palette


def test_voc_palette_known_entries():
    pal = voc_palette()
    assert len(pal) == 256
    assert pal[:8] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0),
                       (0, 0, 128), (128, 0, 128), (0, 128, 128), (128, 128, 128)]
    assert pal[8] == (64, 0, 0)
    assert pal[15] == (192, 128, 128)  # person
    assert pal[255] == (224, 224, 192)  # void / boundary
    assert voc_palette(3) == pal[:3]


def test_voc_palette_matches_shared_voc_classes_file():
    path = DATA / "voc_samples" / "classes.json"
    if not path.is_file():
        pytest.skip("shared VOC data not present")
    colors = json.loads(path.read_text())["colors"]
    assert [tuple(c) for c in colors] == voc_palette(len(colors))


# ---------------------------------------------------------------- index PNG


def test_index_png_round_trip_with_palette(tmp_path):
    labels = np.array([[0, 1, 2], [255, 2, 0], [7, 7, 254]], np.int64)
    path = tmp_path / "lab.png"
    write_index_png(path, labels, palette=[(10, 20, 30), (40, 50, 60)])

    with Image.open(path) as im:
        assert im.mode == "P"
        pal = im.getpalette()
        assert pal[:6] == [10, 20, 30, 40, 50, 60]  # given colours for the first classes
        assert tuple(pal[2 * 3: 2 * 3 + 3]) == voc_palette()[2]  # the rest from VOC
        assert tuple(pal[255 * 3: 255 * 3 + 3]) == (224, 224, 192)  # unlabelled: neutral
    got = read_label_image(path)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, labels)


def test_index_png_default_palette_is_voc(tmp_path):
    write_index_png(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    with Image.open(tmp_path / "a.png") as im:
        pal = im.getpalette()
    assert [tuple(pal[i: i + 3]) for i in range(0, 30, 3)] == voc_palette(10)


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.array([[0, 256]]), r"0\.\.255.*0\.\.256"),
        (np.array([[-1, 3]]), r"0\.\.255.*-1\.\.3"),
        (np.array([[0.0, 1.0]]), "integer"),
        (np.zeros((2, 2, 3), np.uint8), "2-D"),
    ],
)
def test_index_png_rejects_bad_arrays(tmp_path, labels, match):
    path = tmp_path / "bad.png"
    with pytest.raises(MaskCLIPError, match=match):
        write_index_png(path, labels)
    assert not path.exists()


def test_index_png_rejects_bad_palette(tmp_path):
    with pytest.raises(MaskCLIPError, match="colour 1"):
        write_index_png(tmp_path / "x.png", np.zeros((2, 2), np.uint8), palette=[(0, 0, 0), (300, 0, 0)])


def test_index_png_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "lab.png"
    write_index_png(path, np.ones((4, 4), np.uint8))
    before = path.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk hiccup")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        write_index_png(path, np.zeros((4, 4), np.uint8))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["lab.png"]


# ---------------------------------------------------------------- read_label_image


def test_read_palette_png_returns_indices_not_colours(tmp_path):
    idx = np.array([[0, 3], [15, 255]], np.uint8)
    im = Image.fromarray(idx)
    im.putpalette([c for rgb in voc_palette() for c in rgb])
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_label_image(tmp_path / "p.png"), idx)


def test_read_grey_pngs(tmp_path):
    idx = np.array([[0, 10], [20, 255]], np.uint8)
    Image.fromarray(idx).save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_label_image(tmp_path / "l.png"), idx)
    Image.fromarray(idx.astype(np.uint16)).save(tmp_path / "l16.png")  # 16-bit grey, values fit
    np.testing.assert_array_equal(read_label_image(tmp_path / "l16.png"), idx)
    Image.fromarray(np.array([[0, 300]], np.uint16)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match=r"0\.\.300"):
        read_label_image(tmp_path / "big.png")


def test_read_shared_voc_label_as_indices():
    folder = DATA / "voc_samples" / "labels"
    if not folder.is_dir():
        pytest.skip("shared VOC data not present")
    path = sorted(folder.glob("*.png"))[0]
    got = read_label_image(path)
    with Image.open(path) as im:
        expected = np.asarray(im)
    np.testing.assert_array_equal(got, expected)
    assert set(np.unique(got)) <= set(range(21)) | {255}


def test_read_uint32_tiff_like_napari(tmp_path):
    labels = np.array([[0, 1, 2], [3, 255, 4]], np.uint32)
    tifffile.imwrite(tmp_path / "layer.tif", labels)
    got = read_label_image(tmp_path / "layer.tif")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, labels)


def test_read_tiff_written_by_napari_labels_writer(tmp_path):
    write_mod = pytest.importorskip("napari_builtins.io._write")
    labels = np.array([[0, 5], [9, 255]], np.uint8)
    out = write_mod.napari_write_labels(str(tmp_path / "from_napari.tif"), labels, {})
    assert tifffile.imread(out).dtype == np.uint32  # napari widens small label types to uint32
    np.testing.assert_array_equal(read_label_image(out), labels)


def test_read_tiff_out_of_range_float_or_3d_is_an_error(tmp_path):
    tifffile.imwrite(tmp_path / "big.tif", np.array([[0, 1000]], np.uint32))
    with pytest.raises(ImageReadError, match=r"big.tif.*0\.\.1000.*0\.\.255"):
        read_label_image(tmp_path / "big.tif")
    tifffile.imwrite(tmp_path / "float.tif", np.zeros((2, 2), np.float32))
    with pytest.raises(ImageReadError, match="float32"):
        read_label_image(tmp_path / "float.tif")
    tifffile.imwrite(tmp_path / "vol.tif", np.zeros((3, 4, 5), np.uint32), photometric="minisblack")
    with pytest.raises(ImageReadError, match=r"\(3, 4, 5\)"):
        read_label_image(tmp_path / "vol.tif")


def test_read_rgb_label_png_is_refused(tmp_path):
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "colour.png")
    with pytest.raises(ImageReadError, match="colour.png.*RGB colour image.*class indices"):
        read_label_image(tmp_path / "colour.png")


def test_read_corrupt_label_files(tmp_path):
    (tmp_path / "text.png").write_text("not a png")
    with pytest.raises(ImageReadError, match="text.png"):
        read_label_image(tmp_path / "text.png")
    with pytest.raises(ImageReadError, match="not found"):
        read_label_image(tmp_path / "absent.png")
    write_index_png(tmp_path / "ok.png", np.random.default_rng(0).integers(0, 20, (64, 64)))
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:100])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_label_image(tmp_path / "cut.png")


# ---------------------------------------------------------------- classes.json


def test_classes_json_round_trip(tmp_path):
    path = tmp_path / "classes.json"
    write_classes_json(path, ["road", "car", "sky"], colors=[(1, 2, 3), [4, 5, 6], (7, 8, 9)])
    assert read_classes_json(path) == {
        "classes": ["road", "car", "sky"],
        "colors": [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
        "ignore_index": 255,
    }
    write_classes_json(path, ["a", "b"], ignore_index=0 + 200)
    data = read_classes_json(path)
    assert data["colors"] == [list(c) for c in voc_palette(2)]
    assert data["ignore_index"] == 200


def test_read_shared_classes_files():
    camvid = DATA / "camvid" / "classes.json"
    voc = DATA / "voc_samples" / "classes.json"
    if not camvid.is_file() or not voc.is_file():
        pytest.skip("shared data not present")
    c = read_classes_json(camvid)
    assert c["classes"][0] == "sky" and len(c["classes"]) == 11 and c["ignore_index"] == 255
    assert c["colors"][0] == [128, 128, 128]
    v = read_classes_json(voc)
    assert v["classes"][0] == "background" and len(v["classes"]) == 21 and len(v["colors"]) == 21


def test_classes_json_defaults_when_only_names(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"classes": ["x", "y"]}))
    assert read_classes_json(path) == {"classes": ["x", "y"], "colors": [[0, 0, 0], [128, 0, 0]], "ignore_index": 255}


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not valid JSON"),
        ('["a", "b"]', '"classes" list'),
        ('{"classes": []}', "empty"),
        ('{"classes": ["a", "a"]}', "'a' appears twice"),
        ('{"classes": ["a", ""]}', "class 1 has no name"),
        ('{"classes": ["a", "b"], "colors": [[0, 0, 0]]}', "1 colours for 2 classes"),
        ('{"classes": ["a", "b"], "colors": [[0, 0, 0], [0, 0]]}', "colour 1"),
        ('{"classes": ["a", "b"], "ignore_index": 1}', "collides with class 1"),
        ('{"classes": ["a"], "ignore_index": 300}', "0..255"),
    ],
)
def test_bad_classes_json(tmp_path, content, match):
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(MaskCLIPError, match=match):
        read_classes_json(path)


def test_missing_classes_json(tmp_path):
    with pytest.raises(MaskCLIPError, match="not found"):
        read_classes_json(tmp_path / "nope.json")
