"""Packaging (issue 21 item 6): metadata only in pyproject.toml (PEP 621), the fixed top-level layout,
package discovery under src/ and the root, the licence file, and no development scripts in the packages.
Static checks (no build); the wheel's file list is checked by hand with `python -m build --wheel`.
"""
from __future__ import annotations

import configparser
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_layout():
    for path in ("maskclip_napari", "src/maskclip", "tests", "sample_data", "setup.cfg", "pyproject.toml", "LICENSE"):
        assert (ROOT / path).exists(), path


def test_metadata_in_pyproject(pyproject):
    import maskclip

    project = pyproject["project"]
    assert project["name"] == "maskclip-napari"
    assert project["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "maskclip.__version__"}
    assert maskclip.__version__
    assert project["requires-python"] == ">=3.10"
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert "Framework :: napari" in project["classifiers"]
    assert project["scripts"] == {"maskclip": "maskclip.cli:main"}
    assert project["entry-points"]["napari.manifest"] == {"maskclip-napari": "maskclip_napari:napari.yaml"}
    assert set(project["optional-dependencies"]) == {"napari", "all", "dev", "coco"}
    assert project["gui-scripts"] == {"maskclip-annotate": "maskclip_napari.__main__:main"}
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")


def test_setup_cfg_declares_no_metadata():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    assert not {"metadata", "options"} & set(cfg.sections())
    assert not any(s.startswith("options.") for s in cfg.sections())


def test_package_list_is_complete(pyproject):
    """Packages are listed (the sample photos are mapped into the plugin); every folder with an __init__.py
    under src/maskclip and maskclip_napari must be in the list, or the wheel would silently lack it."""
    setuptools_cfg = pyproject["tool"]["setuptools"]
    listed = set(setuptools_cfg["packages"])
    on_disk = {".".join(p.relative_to(ROOT / "src").parent.parts) for p in (ROOT / "src" / "maskclip").rglob("__init__.py")}
    on_disk |= {".".join(p.relative_to(ROOT).parent.parts) for p in (ROOT / "maskclip_napari").rglob("__init__.py")}
    assert listed - {"maskclip_napari.sample_data"} == on_disk, "add new packages to [tool.setuptools] packages"
    assert setuptools_cfg["package-dir"] == {"maskclip": "src/maskclip", "maskclip_napari": "maskclip_napari",
                                             "maskclip_napari.sample_data": "sample_data"}
    data = setuptools_cfg["package-data"]
    assert data == {"maskclip": ["model_configs/*.json"], "maskclip_napari": ["napari.yaml"],
                    "maskclip_napari.sample_data": ["images/*.jpg", "classes.txt", "README.md"]}
    assert list((ROOT / "src" / "maskclip").glob("model_configs/*.json"))
    assert len(list((ROOT / "sample_data" / "images").glob("*.jpg"))) == 4


def test_sdist_manifest_carries_what_the_tests_need():
    manifest = (ROOT / "MANIFEST.in").read_text(encoding="utf-8").split()
    for folder in ("tests", "sample_data", "requirements", "docs", "src", "maskclip_napari"):
        assert folder in manifest, folder


def test_dependencies(pyproject):
    """Issue 17 item 3: what is imported is declared, and nothing else; optional parts are extras."""
    project = pyproject["project"]
    names = {d.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower() for d in project["dependencies"]}
    assert {"huggingface_hub", "open_clip_torch", "platformdirs"} <= names
    assert not {"scikit-image", "magicgui", "pycocotools"} & names
    assert "open_clip_torch>=3.0,<4" in project["dependencies"]
    extras = project["optional-dependencies"]
    assert extras["coco"] == ["pycocotools>=2.0.7"]
    assert any(d.startswith("scikit-image") for d in extras["napari"])
    assert not any("magicgui" in d for ds in extras.values() for d in ds)
    sources = [p.read_text(encoding="utf-8") for p in (ROOT / "src").rglob("*.py")]
    sources += [p.read_text(encoding="utf-8") for p in (ROOT / "maskclip_napari").rglob("*.py")]
    assert not any("import magicgui" in s or "from magicgui" in s for s in sources)
    assert not any("skimage" in s for s in [p.read_text(encoding="utf-8") for p in (ROOT / "src").rglob("*.py")])


def test_no_development_scripts_in_the_packages():
    names = {p.name for p in (ROOT / "maskclip_napari").glob("*.py")} | {
        p.name for p in (ROOT / "src" / "maskclip").rglob("*.py")}
    assert not [n for n in names if "screenshot" in n]
    assert (ROOT / "scripts" / "screenshot_annotator.py").exists()
    assert (ROOT / "scripts" / "screenshot_training.py").exists()
