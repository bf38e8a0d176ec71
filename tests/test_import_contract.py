"""Import contract: the command line parses without torch, the light core modules stay torch-free, and the
library (src/maskclip) never imports napari or Qt. Each check runs in a fresh interpreter."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "torchvision")
GUI = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6")

# modules the CLI's parser, the project store and the annotator read before any model is loaded
TORCH_FREE = ("maskclip", "maskclip.cli", "maskclip.cli_options", "maskclip.cli_segment", "maskclip.cli_eval",
              "maskclip.cli_project", "maskclip.cli_train", "maskclip.defaults", "maskclip.dense_modes",
              "maskclip.options", "maskclip.settings", "maskclip.prompts", "maskclip.validation",
              "maskclip.run_folder", "maskclip.batch", "maskclip.paths")


def run_python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def loaded(names, result_line: str = "LOADED") -> str:
    return (f"import sys; print({result_line!r}, sorted(m for m in sys.modules "
            f"if m.split('.')[0] in {tuple(names)!r}))")


def last_loaded(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    return [ln for ln in proc.stdout.splitlines() if ln.startswith("LOADED")][-1]


def test_building_the_parser_does_not_load_torch():
    proc = run_python("import maskclip.cli; maskclip.cli.build_parser()\n" + loaded(HEAVY))
    assert last_loaded(proc) == "LOADED []"


@pytest.mark.parametrize("argv", [["--help"], ["segment", "--help"], ["project", "segment", "--help"],
                                  ["train", "--help"], ["refine", "--help"], ["eval", "--help"], ["--version"]])
def test_help_does_not_load_torch(argv):
    code = (f"import sys, runpy\nsys.argv = ['maskclip', *{argv!r}]\n"
            "try:\n    runpy.run_module('maskclip', run_name='__main__')\nexcept SystemExit as exc:\n"
            "    assert exc.code in (0, None), exc.code\n" + loaded(HEAVY))
    proc = run_python(code)
    assert last_loaded(proc) == "LOADED []"
    if argv == ["--version"]:
        import maskclip

        assert proc.stdout.startswith(f"maskclip {maskclip.__version__}")


def test_light_modules_do_not_load_torch():
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in TORCH_FREE) + loaded(HEAVY)
    assert last_loaded(run_python(code)) == "LOADED []"


def test_parsing_a_classes_file_does_not_load_torch(tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("cat, kitty\ndog\n", encoding="utf-8")
    code = (f"from maskclip.prompts import parse_classes_file\n"
            f"assert parse_classes_file({str(classes)!r}) == [['cat', 'kitty'], ['dog']]\n" + loaded(HEAVY))
    assert last_loaded(run_python(code)) == "LOADED []"


def test_the_library_never_imports_napari_or_qt():
    """Every module of src/maskclip, imported (torch included), leaves napari and Qt unloaded."""
    code = ("import importlib, pkgutil, maskclip\n"
            "for info in pkgutil.walk_packages(maskclip.__path__, 'maskclip.'):\n"
            "    if info.name != 'maskclip.__main__':\n"
            "        importlib.import_module(info.name)\n"
            "maskclip.load  # the lazily imported model module\n" + loaded(GUI))
    assert last_loaded(run_python(code)) == "LOADED []"
