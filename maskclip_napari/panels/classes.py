"""The "Classes" panel: the class editor (`_class_editor.ClassEditor`: names, synonyms, colours, order,
background prompts) and the brush line (which class the labels layer paints).

Signals: edit_requested(str method, tuple args): a `Project` class method to call with args
("add_class", "remove_class", "rename_class", "set_class_synonyms", "set_class_colour", "reorder_classes",
"set_background"); background_requested(list prompts); class_selected(str name).
"""
from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QGroupBox, QLabel, QVBoxLayout

from .. import _wording as say
from .._class_editor import ClassEditor


class ClassesPanel(QGroupBox):
    edit_requested = Signal(str, tuple)
    background_requested = Signal(list)
    class_selected = Signal(str)

    def __init__(self, parent=None):
        super().__init__("Classes", parent)
        v = QVBoxLayout(self)
        editor = self.class_editor = ClassEditor()
        request = self.edit_requested.emit
        editor.add_requested.connect(lambda n, s: request("add_class", (n, s)))
        editor.remove_requested.connect(lambda n: request("remove_class", (n,)))
        editor.rename_requested.connect(lambda o, n: request("rename_class", (o, n)))
        editor.synonyms_requested.connect(lambda n, s: request("set_class_synonyms", (n, s)))
        editor.colour_requested.connect(lambda n, c: request("set_class_colour", (n, c)))
        editor.reorder_requested.connect(lambda names: request("reorder_classes", (names,)))
        editor.background_requested.connect(lambda prompts: self.background_requested.emit(list(prompts)))
        editor.class_selected.connect(lambda name: self.class_selected.emit(name))
        v.addWidget(editor)
        self.brush_label = QLabel()  # which class the brush paints (napari's label box shows only a number)
        self.brush_label.setToolTip(say.TIPS["brush"])
        v.addWidget(self.brush_label)

    def show_classes(self, classes, background) -> None:
        self.class_editor.set_classes(classes, background)

    def show_taught(self, taught: dict[str, int] | None, background: int | None = None) -> None:
        """Verified pixels per class (and confirmed background) learning from corrections learned from;
        None hides them."""
        self.class_editor.show_taught(taught, background)

    def show_brush(self, index: int, name: str | None, colour=None) -> None:
        """The labels layer's selected label (0-based class index; name None when it is not a class)."""
        self.class_editor.select_class(name)
        self.brush_label.setText(say.brush(index, name, colour))
