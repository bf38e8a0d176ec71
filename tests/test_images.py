"""Image listing, reading (PIL / tifffile / EXIF / damaged files) and conversion to RGB float."""
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from maskclip.errors import ImageReadError, MaskCLIPError
from maskclip.images import IMAGE_EXTENSIONS, list_images, read_image, to_rgb_float

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _touch_png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(path)
    return path


# ---------------------------------------------------------------- list_images


def test_image_extensions_cover_common_formats():
    assert set(IMAGE_EXTENSIONS) == {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


def test_list_images_folder_sorted_skips_hidden_and_non_images(tmp_path):
    for name in ["b.png", "a.JPG", "c.tiff", ".hidden.png", "sub/d.png", ".git/e.png"]:
        _touch_png(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "classes.json").write_text("{}")

    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png", "c.tiff"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        "a.JPG", "b.png", "c.tiff", "sub/d.png"
    ]


def test_list_images_mixes_files_and_folders_without_duplicates(tmp_path):
    a = _touch_png(tmp_path / "f" / "a.png")
    z = _touch_png(tmp_path / "z.webp")
    txt = tmp_path / "readme.txt"
    txt.write_text("not an image")
    got = list_images([str(z), tmp_path / "f", a, txt])
    assert got == sorted([a, z], key=str)
    assert list_images(a) == [a]  # a single path is accepted too


def test_list_images_missing_path_is_an_error(tmp_path):
    with pytest.raises(ImageReadError, match="no such file or folder"):
        list_images([tmp_path / "nope"])


# ---------------------------------------------------------------- read_image


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(60, dtype=np.uint8).reshape(5, 12),  # L
        np.arange(180, dtype=np.uint8).reshape(5, 12, 3),  # RGB
        np.arange(240, dtype=np.uint8).reshape(5, 12, 4),  # RGBA
        (np.arange(60, dtype=np.uint16) * 1000).reshape(5, 12),  # 16-bit grey
    ],
    ids=["grey", "rgb", "rgba", "uint16"],
)
def test_read_png_as_stored(tmp_path, arr):
    path = tmp_path / "x.png"
    Image.fromarray(arr).save(path)
    got = read_image(path)
    assert got.dtype == arr.dtype
    np.testing.assert_array_equal(got, arr)


def test_read_palette_png_gives_colours(tmp_path):
    idx = np.array([[0, 1], [2, 1]], np.uint8)
    im = Image.fromarray(idx)
    im.putpalette([10, 20, 30, 200, 100, 0, 5, 5, 5] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "p.png")
    got = read_image(tmp_path / "p.png")
    assert got.shape == (2, 2, 3)
    assert got[0, 1].tolist() == [200, 100, 0]
    assert got[1, 0].tolist() == [5, 5, 5]


def test_read_jpeg_applies_exif_orientation(tmp_path):
    # Stored 40 wide x 20 high, white block in the stored top-left corner. Orientation 6 means "rotate
    # 90 degrees clockwise to display": the displayed image is 20 wide x 40 high and the block moves to
    # the top-right corner.
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:8, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    got = read_image(path)
    assert got.shape == (40, 20, 3)
    assert got[:6, -6:].mean() > 200  # top-right is the block
    assert got[:6, :6].mean() < 50 and got[-6:, -6:].mean() < 50


def test_read_camvid_jpeg():
    folder = DATA / "camvid" / "val" / "images"
    if not folder.is_dir():
        pytest.skip("shared CamVid data not present")
    img = read_image(sorted(folder.iterdir())[0])
    assert img.shape == (360, 480, 3) and img.dtype == np.uint8


def test_read_tiff_rgb_and_float(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 65535, (6, 7, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.tif"), rgb)
    f = np.linspace(-3, 9, 42, dtype=np.float32).reshape(6, 7)
    tifffile.imwrite(tmp_path / "f.tiff", f)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tiff"), f)


def test_read_tiff_stack_takes_first_plane(tmp_path):
    stack = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6)  # 4 pages of 5x6
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    np.testing.assert_array_equal(read_image(tmp_path / "stack.tif"), stack[0])

    hyper = np.arange(2 * 3 * 5 * 6 * 3, dtype=np.uint8).reshape(2, 3, 5, 6, 3)  # T, Z, Y, X, RGB
    tifffile.imwrite(tmp_path / "hyper.tif", hyper, photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "hyper.tif"), hyper[0, 0])


def test_read_tiff_planar_rgb_puts_channels_last(tmp_path):
    planar = np.arange(3 * 5 * 6, dtype=np.uint8).reshape(3, 5, 6)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tif"), np.moveaxis(planar, 0, -1))


def test_read_tiff_detected_by_content_not_extension(tmp_path):
    arr = np.arange(12, dtype=np.uint16).reshape(3, 4)
    tifffile.imwrite(tmp_path / "mislabelled.png", arr)
    np.testing.assert_array_equal(read_image(tmp_path / "mislabelled.png"), arr)


def test_read_missing_and_empty_files(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageReadError, match="not a file"):
        read_image(tmp_path)


def test_read_text_file_renamed_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n" * 10)
    with pytest.raises(ImageReadError, match="notes.png.*not a recognised image"):
        read_image(path)


def test_read_truncated_jpeg(tmp_path):
    rng = np.random.default_rng(1)
    full = tmp_path / "full.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full, quality=90)
    data = full.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.jpg.*truncated"):
        read_image(cut)
    assert read_image(full).shape == (64, 64, 3)


def test_read_truncated_png_and_corrupt_tiff(tmp_path):
    full = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64), dtype=np.uint8)).save(full)
    (tmp_path / "cut.png").write_bytes(full.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + b"\xff" * 40)
    with pytest.raises(ImageReadError, match="bad.tif.*TIFF"):
        read_image(tmp_path / "bad.tif")


def test_image_read_error_is_a_maskclip_error():
    assert issubclass(ImageReadError, MaskCLIPError)


# ---------------------------------------------------------------- to_rgb_float


def _check_rgb(out, shape):
    assert out.dtype == np.float32 and out.shape == shape + (3,)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_uint8_rgb_scaled_by_255():
    arr = np.array([[[0, 51, 255]]], np.uint8)
    out = to_rgb_float(arr)
    _check_rgb(out, (1, 1))
    np.testing.assert_allclose(out[0, 0], [0.0, 0.2, 1.0])


def test_grey_is_replicated():
    grey = np.array([[0, 255], [51, 102]], np.uint8)
    for arr in (grey, grey[..., None]):
        out = to_rgb_float(arr)
        _check_rgb(out, (2, 2))
        np.testing.assert_allclose(out[..., 0], grey / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(out[..., 0], out[..., 1])
        np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_grey_alpha_gives_grey_and_rgba_drops_alpha():
    la = np.stack([np.full((2, 3), 255, np.uint8), np.zeros((2, 3), np.uint8)], axis=-1)
    np.testing.assert_array_equal(to_rgb_float(la), np.ones((2, 3, 3), np.float32))
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0  # fully transparent: alpha is dropped, not composited
    out = to_rgb_float(rgba)
    _check_rgb(out, (2, 3))
    np.testing.assert_array_equal(out[..., 0], 1.0)
    np.testing.assert_array_equal(out[..., 1:], 0.0)


def test_uint16_scaled_by_65535_and_bool_to_01():
    out = to_rgb_float(np.array([[0, 65535, 13107]], np.uint16))
    np.testing.assert_allclose(out[0, :, 0], [0.0, 1.0, 0.2], rtol=1e-6)
    out = to_rgb_float(np.array([[True, False]]))
    np.testing.assert_array_equal(out[0, :, 1], [1.0, 0.0])


def test_other_ints_and_out_of_range_floats_are_min_max_normalised():
    out = to_rgb_float(np.array([[-10, 0, 30]], np.int16))
    np.testing.assert_allclose(out[0, :, 0], [0.0, 0.25, 1.0])
    out = to_rgb_float(np.array([[100, 300]], np.uint32))
    np.testing.assert_allclose(out[0, :, 2], [0.0, 1.0])
    out = to_rgb_float(np.array([[2.0, 4.0, 6.0]], np.float64))
    np.testing.assert_allclose(out[0, :, 0], [0.0, 0.5, 1.0])
    # RGB floats are normalised over the whole image, not per channel
    out = to_rgb_float(np.array([[[0.0, 5.0, 10.0]]], np.float32))
    np.testing.assert_allclose(out[0, 0], [0.0, 0.5, 1.0])


def test_floats_in_unit_range_kept_and_constant_image_gives_zeros():
    arr = np.array([[0.25, 0.5], [0.75, 1.0]], np.float32)
    np.testing.assert_array_equal(to_rgb_float(arr)[..., 0], arr)
    np.testing.assert_array_equal(to_rgb_float(np.full((3, 3), 7.5)), 0.0)
    np.testing.assert_array_equal(to_rgb_float(np.full((3, 3), 1000, np.int32)), 0.0)


def test_nan_and_inf_become_zero():
    out = to_rgb_float(np.array([[0.5, np.nan, 1.0]], np.float32))
    np.testing.assert_array_equal(out[0, :, 0], [0.5, 0.0, 1.0])
    out = to_rgb_float(np.array([[np.inf, 2.0, 4.0, -np.inf]]))
    np.testing.assert_allclose(out[0, :, 0], [0.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(to_rgb_float(np.full((2, 2), np.nan)), 0.0)


@pytest.mark.parametrize("shape", [(5,), (4, 4, 5), (2, 3, 4, 3), (0, 4, 3)])
def test_unsupported_shapes_name_the_shape(shape):
    with pytest.raises(ImageReadError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        to_rgb_float(np.zeros(shape, np.uint8))


def test_unsupported_dtype():
    with pytest.raises(ImageReadError, match="complex"):
        to_rgb_float(np.zeros((2, 2), np.complex64))
