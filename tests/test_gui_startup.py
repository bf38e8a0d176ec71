"""Issue 22 defect 8: at start-up the folder is read in the background while the window already takes input.
Keys pressed before the project shows say so instead of doing nothing (or toggling a setting the project's
settings then replace), and the method's settings wait for the project.
"""
from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from maskclip_napari import _navigation  # noqa: E402
from maskclip_napari import _wording as say  # noqa: E402
from maskclip_napari._dock import dock_annotator  # noqa: E402

pytestmark = pytest.mark.gui
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    pytest.skip("no display: install Xvfb (scripts/system-packages.txt) so pytest-xvfb can start one",
                allow_module_level=True)

TIMEOUT_MS = 60_000


@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_keys_before_the_project_shows_say_it_is_still_opening(make_napari_viewer, qtbot, image_folder,
                                                                monkeypatch):
    gate = threading.Event()  # the folder's read waits for it: "still opening" for as long as the test needs
    real_open = _navigation.open_job

    def held_open(*args):
        gate.wait(TIMEOUT_MS / 1000)
        return real_open(*args)

    monkeypatch.setattr(_navigation, "open_job", held_open)
    viewer = make_napari_viewer()
    widget = dock_annotator(viewer)
    keys = viewer.window._qt_viewer._key_map_handler
    smoothing = widget.ks_check.isChecked()
    try:
        widget.open_path(image_folder, background=True)
        assert widget.loading and widget.project is None
        assert not widget.busy_bar.isHidden()  # the busy bar shows while the folder is read
        assert not widget.method_panel.isEnabled()  # its settings are the project's: they wait for it
        for key in ("PageDown", "N", "G", "K", "Shift-R"):
            widget.show_message("")
            keys.press_key(key)
            keys.release_key(key)
            assert widget.message_text() == say.gui_text(say.STILL_OPENING), key
        assert widget.ks_check.isChecked() == smoothing  # K did not change a setting the project would reset
    finally:
        gate.set()
    qtbot.waitUntil(lambda: widget.current_id is not None and not widget.loading, timeout=TIMEOUT_MS)
    assert widget.method_panel.isEnabled() and widget.busy_bar.isHidden()
    keys.press_key("K")
    keys.release_key("K")
    assert widget.ks_check.isChecked() != smoothing  # now the key does what it says


def test_keys_without_a_project_say_open_one_first(make_napari_viewer, image_folder):
    viewer = make_napari_viewer()
    widget = dock_annotator(viewer)
    assert widget.method_panel.isEnabled()  # no project being read: the model can be chosen and loaded
    keys = viewer.window._qt_viewer._key_map_handler
    keys.press_key("PageDown")
    keys.release_key("PageDown")
    assert widget.message_text() == say.gui_text(say.OPEN_FIRST)
