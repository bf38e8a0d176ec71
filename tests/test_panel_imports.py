"""The annotator's parts below the widget never import it: panels talk upward by Qt signals, and the
edit state, layer, job, segmentation and child-process modules are used by the widget, not the other way
round (issue 21.4). Read from the source, so no display is needed."""
from __future__ import annotations

import ast
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[1] / "maskclip_napari"
PARTS = [*sorted((PLUGIN / "panels").glob("*.py")),
         *(PLUGIN / f"{name}.py" for name in ("editing", "_edit_saving", "_segmenting", "_layer_manager", "_jobs",
                                              "_child_process", "_run_commands", "_loss_plot", "_shortcuts",
                                              "_wording", "_class_editor", "_history", "_review", "_unsure",
                                              "_wand", "_wand_tool"))]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
            names |= {"." * node.level + (node.module + "." if node.module else "") + a.name for a in node.names}
    return names


def test_no_part_imports_the_widget():
    assert all(path.is_file() for path in PARTS)
    offenders = {path.relative_to(PLUGIN).as_posix(): sorted(n for n in imported_modules(path) if "_widget" in n
                                                             or n.split(".")[-1] == "AnnotatorWidget")
                 for path in PARTS}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_edit_state_needs_no_qt_or_napari():
    heavy = ("qtpy", "napari", "superqt", "PyQt5", "PySide2", "PyQt6", "PySide6")
    for name in ("editing.py", "_history.py", "_run_commands.py", "_wording.py", "_unsure.py", "_wand.py"):
        imports = imported_modules(PLUGIN / name)
        assert not [n for n in imports if n.split(".")[0] in heavy], name
        assert not [n for n in imports if n.startswith(".") and n.lstrip(".").split(".")[0] not in
                    ("", "_history", "editing", "_torch_env")], name  # _torch_env: sys.modules only


def string_literals(path: Path) -> list[str]:
    """The str constants of a module's code (docstrings left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs]


def test_the_run_folder_layout_has_one_home():
    """Training, refine and the annotator agree through maskclip.run_folder: no annotator module spells a
    run-folder file name itself (issue 21.3)."""
    names = ("progress.json", "metrics.jsonl", "annotator.json", "student.pt", "last.pt", "config.json")
    offenders = {path.relative_to(PLUGIN).as_posix(): [s for s in string_literals(path) if s == "runs" or
                                                       any(n in s for n in names)]
                 for path in PLUGIN.rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
