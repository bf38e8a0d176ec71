"""Issue 22 defect 8: start-up does not import torch's stack (it froze the window ~3.5 s on two CPU cores).

Importing the plugin, docking the annotator and opening a folder leave torch, torchvision and open_clip
unimported; the worker that loads the first model imports them, with triton hidden (`_torch_env`: triton
loaded after napari's OpenGL context crashes the process). Each check runs in a fresh interpreter, because
this test process has torch imported already (conftest).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("qtpy")

HEAVY = ("torch", "torchvision", "open_clip")

IMPORTS = r"""
import sys
import maskclip_napari, maskclip_napari.__main__
from npe2 import PluginManifest
from npe2.manifest.utils import import_python_name
from maskclip_napari._dock import MANIFEST
for command in PluginManifest.from_file(MANIFEST).contributions.commands:  # every entry point napari imports
    import_python_name(command.python_name)
print("imported:", [m for m in %r if m in sys.modules])
""" % (HEAVY,)

DOCK_OPEN_LOAD = r"""
import sys, time
from pathlib import Path
import napari
from qtpy.QtWidgets import QApplication
from maskclip_napari._dock import dock_annotator
from maskclip_napari.panels.method import RANDOM_WEIGHTS

HEAVY = %r
app = QApplication.instance() or QApplication([])


def spin(done, what, timeout_s=240):
    end = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > end:
            sys.exit(f"timed out waiting for {what}; message: {widget.message_text()!r}")
        app.processEvents()
        time.sleep(0.005)


viewer = napari.Viewer(show=True)  # a canvas with its OpenGL context, as in napari
widget = dock_annotator(viewer)
widget.open_path(Path(sys.argv[1]), background=True)
spin(lambda: widget.current_id is not None and not widget.loading, "the first image")
early = [m for m in HEAVY if m in sys.modules]
assert not early, f"docking and opening imported {early}"
assert "usable" in widget.model_label.text(), widget.model_label.text()  # where it will run: not asked yet
widget.set_model_choice("maskclip-tiny-vit", RANDOM_WEIGHTS, "cpu")
widget.load_model()
spin(lambda: not widget.busy, "the model")
assert widget.session is not None, widget.message_text()
assert "torch" in sys.modules and "open_clip" in sys.modules
assert "triton" not in sys.modules, "the worker's import loaded triton"
assert "CPU" in widget.model_label.text(), widget.model_label.text()
viewer.close()
print("ok")
""" % (HEAVY,)


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600,
                          env=env)


def test_plugin_entry_points_do_not_import_torch():
    proc = _run(IMPORTS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "imported: []", proc.stdout


@pytest.mark.gui
def test_dock_and_open_leave_torch_to_the_model_loading_worker(tmp_path):
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        pytest.skip("no display: install Xvfb (scripts/system-packages.txt) so pytest-xvfb can start one")
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / name)
    proc = _run(DOCK_OPEN_LOAD, str(folder))
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-3000:]}"  # -11: triton's segfault
    assert proc.stdout.strip().splitlines()[-1] == "ok"
