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
    assert set(project["optional-dependencies"]) == {"napari", "all", "dev"}
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")


def test_setup_cfg_declares_no_metadata():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    assert not {"metadata", "options"} & set(cfg.sections())
    assert not any(s.startswith("options.") for s in cfg.sections())


def test_packages_are_discovered(pyproject):
    find = pyproject["tool"]["setuptools"]["packages"]["find"]
    from setuptools import find_packages

    found = set()
    for where in find["where"]:
        found |= set(find_packages(str(ROOT / where), include=find["include"]))
    expected = {".".join(p.relative_to(ROOT).parent.parts) for p in (ROOT / "maskclip_napari").rglob("__init__.py")} | {
        ".".join(p.relative_to(ROOT / "src").parent.parts) for p in (ROOT / "src" / "maskclip").rglob("__init__.py")}
    assert {"maskclip_napari", "maskclip_napari.panels"} <= expected
    assert found == expected
    assert {"maskclip", "maskclip.train"} <= found
    data = pyproject["tool"]["setuptools"]["package-data"]
    assert data == {"maskclip": ["model_configs/*.json"], "maskclip_napari": ["napari.yaml"]}
    assert list((ROOT / "src" / "maskclip").glob("model_configs/*.json"))


def test_no_development_scripts_in_the_packages():
    names = {p.name for p in (ROOT / "maskclip_napari").glob("*.py")} | {
        p.name for p in (ROOT / "src" / "maskclip").rglob("*.py")}
    assert not [n for n in names if "screenshot" in n]
    assert (ROOT / "scripts" / "screenshot_annotator.py").exists()
    assert (ROOT / "scripts" / "screenshot_training.py").exists()
