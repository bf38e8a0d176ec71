"""Issue 17 items 2 and 7: sample photos found in the installed package (package data), the repository, or
rewritten into the platform cache folder (platformdirs, MASKCLIP_CACHE_DIR), and the `maskclip-annotate`
launcher. No napari needed."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from maskclip import paths

ROOT = Path(__file__).resolve().parents[1]


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("MASKCLIP_CACHE_DIR", str(tmp_path / "mine"))
    assert paths.user_cache_dir() == tmp_path / "mine"


def test_cache_dir_follows_the_platform(monkeypatch, tmp_path):
    import platformdirs

    monkeypatch.delenv("MASKCLIP_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.user_cache_dir() == Path(platformdirs.user_cache_dir("maskclip-napari", appauthor=False))
    if sys.platform.startswith("linux"):
        assert paths.user_cache_dir() == tmp_path / "xdg" / "maskclip-napari"


def test_plugin_uses_the_platform_cache_dir(monkeypatch, tmp_path):
    from maskclip_napari import _sample_data

    monkeypatch.setenv("MASKCLIP_CACHE_DIR", str(tmp_path))
    assert _sample_data.user_cache_dir() == tmp_path


def _copy_samples(dest: Path) -> Path:
    shutil.copytree(ROOT / "sample_data", dest)
    return dest


def test_shipped_copy_wins(monkeypatch, tmp_path):
    from maskclip_napari import _sample_data

    shipped = _copy_samples(tmp_path / "site-packages" / "maskclip_napari" / "sample_data")
    monkeypatch.setattr(_sample_data, "_shipped_samples", lambda: shipped)
    assert _sample_data.sample_folder() == shipped / "images"
    assert _sample_data.sample_classes_file() == shipped / "classes.txt"


def test_repository_copy_when_not_installed(monkeypatch, tmp_path):
    from maskclip_napari import _sample_data

    checkout = _copy_samples(tmp_path / "checkout" / "sample_data")
    monkeypatch.setattr(_sample_data, "_shipped_samples", lambda: None)
    monkeypatch.setattr(_sample_data, "_REPO_SAMPLES", checkout)
    monkeypatch.setenv("MASKCLIP_CACHE_DIR", str(tmp_path / "cache"))  # never the real user cache
    assert _sample_data.sample_folder() == checkout / "images"
    assert not (tmp_path / "cache").exists()


def test_this_checkout_or_install_finds_its_samples(monkeypatch, tmp_path):
    """From a checkout the repository copy, from an installed wheel the shipped one: never a rewrite."""
    from maskclip_napari import _sample_data

    monkeypatch.setenv("MASKCLIP_CACHE_DIR", str(tmp_path / "cache"))
    folder = _sample_data.sample_folder()
    assert not (tmp_path / "cache").exists()
    assert sorted(p.name for p in folder.glob("*.jpg")) == sorted(
        p.name for p in (ROOT / "sample_data" / "images").glob("*.jpg"))


def test_written_to_the_cache_when_neither_exists(monkeypatch, tmp_path):
    pytest.importorskip("skimage")
    from maskclip_napari import _sample_data

    monkeypatch.setattr(_sample_data, "_shipped_samples", lambda: None)
    monkeypatch.setattr(_sample_data, "_REPO_SAMPLES", tmp_path / "nothing")
    monkeypatch.setenv("MASKCLIP_CACHE_DIR", str(tmp_path / "cache"))
    folder = _sample_data.sample_folder()
    assert folder == tmp_path / "cache" / "sample_data" / "images"
    assert len(list(folder.glob("*.jpg"))) == 4


def test_maskclip_annotate_launcher(monkeypatch):
    from maskclip_napari.__main__ import build_parser

    monkeypatch.setattr(sys, "argv", ["/venv/bin/maskclip-annotate"])
    assert build_parser().prog == "maskclip-annotate"
    monkeypatch.setattr(sys, "argv", ["/x/maskclip_napari/__main__.py"])
    assert build_parser().prog == "python -m maskclip_napari"
