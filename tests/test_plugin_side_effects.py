"""Issue 17 item 4: the plugin leaves the napari process alone. Importing it hides nothing; the worker that
loads a model imports torch's stack with triton hidden for that import only (see maskclip_napari._torch_env;
tests/test_lazy_imports.py checks that nothing before it imports torch)."""
from __future__ import annotations

import subprocess
import sys

CHECK = r"""
import sys
import maskclip_napari, maskclip_napari._reader, maskclip_napari._writer
assert "triton" not in sys.modules, "importing the plugin touched triton"
from maskclip_napari._torch_env import import_torch_stack, triton_hidden
with triton_hidden():
    assert sys.modules["triton"] is None
assert "triton" not in sys.modules
import_torch_stack()
import torch.utils._triton as t
assert "torchvision" in sys.modules
assert "triton" not in sys.modules, sys.modules.get("triton")   # no entry left behind
assert t.has_triton_package() is False                          # torch's cached answer
import_torch_stack()                                             # idempotent
print("ok")
"""


def test_plugin_import_and_torch_stack_leave_no_trace():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


def test_triton_already_loaded_is_left_alone(monkeypatch):
    from maskclip_napari._torch_env import triton_hidden

    marker = object()
    monkeypatch.setitem(sys.modules, "triton", marker)
    with triton_hidden():
        assert sys.modules["triton"] is marker
    assert sys.modules["triton"] is marker
