"""The plugin's manifest contributions without a viewer: manifest, writer, reader, sample data, launcher."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from maskclip.errors import MaskCLIPError  # noqa: E402
from maskclip.labels_io import read_classes_json, read_label_image  # noqa: E402
from maskclip.project import Project  # noqa: E402
from maskclip_napari._layers import labels_colormap, labels_features  # noqa: E402
from maskclip_napari._reader import get_reader  # noqa: E402
from maskclip_napari._writer import write_labels  # noqa: E402
from maskclip_napari.editing import from_layer_values, to_layer_values  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data" / "images"


def test_manifest_is_valid():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(ROOT / "maskclip_napari" / "napari.yaml")
    assert manifest.name == "maskclip-napari"
    assert [str(c.value) for c in manifest.categories] == ["Segmentation", "Annotation"]  # napari-hub filters
    assert [w.display_name for w in manifest.contributions.widgets] == ["MaskCLIP Annotator"]
    assert manifest.contributions.readers[0].accepts_directories
    assert manifest.contributions.writers[0].layer_types == ["labels"]
    for command in manifest.contributions.commands:  # every python_name resolves
        module, attr = command.python_name.split(":")
        assert callable(getattr(__import__(module, fromlist=[attr]), attr)), command.id


def test_layer_values_round_trip():
    labels = np.array([[0, 1, 255], [254, 3, 255]], np.uint8)
    values = to_layer_values(labels)
    np.testing.assert_array_equal(values, [[1, 2, 0], [255, 4, 0]])
    np.testing.assert_array_equal(from_layer_values(values, 255), labels)
    # values beyond the class list (a label the user typed) read as unlabelled
    np.testing.assert_array_equal(from_layer_values(np.array([0, 1, 2, 3]), 2), [255, 0, 1, 255])


def test_writer_annotator_layer(tmp_path):
    names, colours = ["road", "car", "sky"], [(128, 64, 128), (64, 0, 128), (128, 128, 128)]
    data = np.array([[0, 1, 2], [3, 3, 0]], np.uint8)
    meta = {"features": labels_features(names), "colormap": labels_colormap(colours)}
    written = write_labels(str(tmp_path / "frame"), data, meta)
    assert written == [str(tmp_path / "frame.png"), str(tmp_path / "frame.classes.json")]
    np.testing.assert_array_equal(read_label_image(tmp_path / "frame.png"), [[255, 0, 1], [2, 2, 255]])
    classes = read_classes_json(tmp_path / "frame.classes.json")
    assert classes["classes"] == names and classes["colors"] == [list(c) for c in colours]
    from PIL import Image

    with Image.open(tmp_path / "frame.png") as im:
        assert im.mode == "P" and im.getpalette()[:6] == [128, 64, 128, 64, 0, 128]


def test_writer_plain_layer(tmp_path):
    data = np.array([[0, 2], [5, 2]], np.int32)
    write_labels(str(tmp_path / "plain.png"), data, {})
    np.testing.assert_array_equal(read_label_image(tmp_path / "plain.png"), data)
    assert read_classes_json(tmp_path / "plain.classes.json")["classes"] == [f"label {v}" for v in range(6)]
    with pytest.raises(MaskCLIPError, match="0..254"):
        write_labels(str(tmp_path / "big.png"), np.array([[0, 300]]), {})


def test_writer_through_napari(tmp_path):
    from maskclip_napari._dock import ensure_registered

    ensure_registered()
    layer = napari.layers.Labels(np.array([[1, 2], [0, 1]], np.uint8), features=labels_features(["a", "b"]),
                                 colormap=labels_colormap([(255, 0, 0), (0, 0, 255)]), name="labels")
    written = napari.save_layers(str(tmp_path / "out.png"), [layer], plugin="maskclip-napari")
    assert written and Path(written[0]).name == "out.png"
    np.testing.assert_array_equal(read_label_image(tmp_path / "out.png"), [[0, 1], [255, 0]])


def test_reader_accepts_image_and_project_folders(tmp_path):
    assert get_reader(str(tmp_path)) is None  # empty folder
    assert get_reader(str(SAMPLES / "cat.jpg")) is None  # single files are napari's own business
    assert get_reader([str(SAMPLES), str(SAMPLES)]) is None
    assert callable(get_reader(str(SAMPLES)))
    project = tmp_path / "proj"
    Project.create(project, images=SAMPLES, copy=False)
    assert callable(get_reader(str(project)))


def test_sample_data_is_offline():
    from maskclip_napari._sample_data import SAMPLE_PHOTOS, _photo

    photos = [_photo(name) for name in SAMPLE_PHOTOS]  # bundled with scikit-image: no download
    assert all(data.ndim == 3 and data.dtype == np.uint8 for data in photos)
    assert photos[0].shape == (512, 512, 3)
    # the repository copy matches what write_sample_folder produces
    assert sorted(p.stem for p in SAMPLES.iterdir()) == sorted(SAMPLE_PHOTOS.values())


def test_write_sample_folder(tmp_path):
    from PIL import Image

    from maskclip.text import parse_classes_file
    from maskclip_napari._sample_data import MAX_SIDE, write_sample_folder

    images = write_sample_folder(tmp_path)
    files = sorted(images.iterdir())
    assert len(files) == 4
    for f in files:
        with Image.open(f) as im:
            assert max(im.size) <= MAX_SIDE
    assert parse_classes_file(tmp_path / "classes.txt")[0] == ["person", "astronaut"]


@pytest.mark.gui
def test_launcher_starts_and_saves_screenshot(tmp_path):
    """`python -m maskclip_napari` with no path: sample photos, project in the user cache, widget docked."""
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs a display (pytest-xvfb provides one)")
    shot = tmp_path / "shot.png"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "maskclip_napari", "--screenshot", str(shot)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.stat().st_size > 10_000
    (project_dir,) = (tmp_path / "cache" / "maskclip-napari" / "sample-projects").iterdir()
    project = Project.open(project_dir)
    assert len(project) == 4 and project.class_names[0] == "person"


def test_each_sample_folder_gets_its_own_project(tmp_path, monkeypatch):
    """A project remembers where its images are: a moved or second checkout must not reopen the sample
    project of another one (its images gone: "file not found" at start-up)."""
    from maskclip_napari._sample_data import sample_project_dir

    monkeypatch.setenv("MASKCLIP_CACHE_DIR", str(tmp_path / "cache"))
    one, other = tmp_path / "a" / "images", tmp_path / "b" / "images"
    assert sample_project_dir(one) != sample_project_dir(other)
    assert sample_project_dir(one) == sample_project_dir(one)
    assert sample_project_dir(one).is_relative_to(tmp_path / "cache")


def test_redraws_of_large_images_leave_the_gui_thread(tiny_vit):
    from maskclip_napari._session import GUI_THREAD_REDRAW_VALUES, Method, ModelChoice, ModelSession

    session = ModelSession(ModelChoice("maskclip-tiny-vit", None, "cpu"), tiny_vit)
    method = Method(classes=(("road",), ("car",), ("sky",)), background=(), scales=(64,))
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    side = int((GUI_THREAD_REDRAW_VALUES / 3) ** 0.5) + 1  # just over the budget with 3 classes
    large = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
    assert not session.is_cheap(small, method)  # nothing encoded yet
    for image in (small, large):
        session.segment(image, method)
    assert session.is_cheap(small, method)
    assert tiny_vit.is_ready(large, [["road"], ["car"], ["sky"]], background=(), scales=(64,))
    assert not session.is_cheap(large, method)  # ready, but too many values for the GUI thread
