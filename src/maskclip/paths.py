"""Per-user folders (torch-free): the platform's cache folder for maskclip-napari, with an override.

`MASKCLIP_CACHE_DIR` wins; otherwise platformdirs' user cache folder (`$XDG_CACHE_HOME/maskclip-napari` or
`~/.cache/maskclip-napari` on Linux, `~/Library/Caches/maskclip-napari` on macOS, `%LOCALAPPDATA%\\maskclip-napari
\\Cache` on Windows). Used where nothing else names a folder: the sample photos' demo project.
"""
from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "maskclip-napari"
CACHE_ENV = "MASKCLIP_CACHE_DIR"


def user_cache_dir() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
