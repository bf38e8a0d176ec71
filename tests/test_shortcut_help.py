"""The keyboard help has one source: `_shortcuts` (keys) and `_wording` (what they do). The README's table
is that list; the help window shows the same rows (tests/test_gui_dataset_review.py)."""
import re
from pathlib import Path

from maskclip_napari._shortcuts import SHORTCUTS, TOOL_KEYS, help_rows, markdown_table, shown_key

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_table_is_the_generated_one():
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- shortcuts:[^\n]*-->\n(.*?)<!-- /shortcuts -->", text, re.S)
    assert found, "README.md lost its shortcut table markers"
    assert found.group(1).strip() == markdown_table(), \
        "README's shortcut table is out of date: paste `python -m maskclip_napari._shortcuts` between its markers"


def test_every_key_the_annotator_adds_is_listed_once():
    keys = [key for key, _ in help_rows()]
    for key in SHORTCUTS.values():
        assert keys.count(shown_key(key)) == 1, key
    tools = next(key for key in keys if "Shift+P" in key)
    assert all(shown_key(key) in tools.split(", ") for key in TOOL_KEYS.values())
    assert "1 … 9" in keys and "Ctrl+Z / Ctrl+Shift+Z" in keys and "M" in keys
