"""The annotator's keyboard shortcuts as napari keybindings.

SHORTCUTS are viewer-wide (none is one of napari's default keys for any layer); on the labels layer,
Ctrl+Z / Ctrl+Shift+Z undo and redo labels and verified pixels together and the number keys 1-9 pick
classes instead of napari's mode keys, whose letter keys (E, P, F, L, Z) stay. Bindings hold their target
only weakly: a strong reference kept closed viewers (and their widgets) alive.

napari's keybindings only see keys pressed while its canvas has focus: after a click on a dock button,
PageDown would scroll the dock and, on the image list, jump a page of rows. So SHORTCUTS are also Qt
shortcuts of the viewer's main window (wherever focus is inside it; a text field still takes the letters
typed into it), and undo/redo and 1-9 are also shortcuts of the dock (`bind_window_shortcuts`).
"""
from __future__ import annotations

import weakref

SHORTCUTS = {
    "next_image": "PageDown",
    "previous_image": "PageUp",
    "next_unverified": "N",
    "next_least_confident": "Shift-N",
    "segment_current": "G",
    "mark_reviewed": "Shift-R",
    "verify_selected_class": "Shift-C",
    "toggle_key_smoothing": "K",
    "toggle_prompt_denoising": "Shift-D",
    "toggle_unsure": "U",
    "next_unsure_region": "Shift-U",
    "toggle_wand": "W",
    "apply_wand": "Shift-W",
    "show_keys": "F1",
}


# the control each shortcut presses (the widget's attribute; its tooltip names the key)
SHORTCUT_CONTROLS = {"next_image": "next_button", "previous_image": "prev_button",
                     "next_unverified": "next_unverified_button", "next_least_confident": "least_confident_button",
                     "segment_current": "segment_button",
                     "mark_reviewed": "reviewed_button", "verify_selected_class": "verify_class_button",
                     "toggle_key_smoothing": "ks_check", "toggle_prompt_denoising": "pd_check",
                     "toggle_unsure": "unsure_check", "next_unsure_region": "next_region_button",
                     "toggle_wand": "wand_button", "apply_wand": "apply_wand_button", "show_keys": "keys_button"}


def run_shortcut(target, name: str) -> None:
    """What a SHORTCUTS key does on the annotator widget `target`: the same as its control (navigation
    reads in a worker): a check box toggles, else the widget's method of the shortcut's name runs, else the
    control is clicked (nothing happens while it is disabled)."""
    control = getattr(target, SHORTCUT_CONTROLS[name])
    if name in ("next_image", "previous_image"):
        target.nav.step(+1 if name == "next_image" else -1, background=True)
    elif control.isCheckable():
        control.toggle()
    elif hasattr(target, name):
        getattr(target, name)()
    else:
        control.click()


def bind_viewer_shortcuts(viewer, target, controls: dict) -> None:
    """SHORTCUTS on the viewer, each calling target.on_shortcut(name); the key is added to the tooltip of
    the control it presses (controls: name -> widget)."""
    ref = weakref.ref(target)
    for name, control in controls.items():
        key = SHORTCUTS[name]

        def press(_viewer, name=name):
            obj = ref()
            if obj is not None:
                obj.on_shortcut(name)

        viewer.bind_key(key, press, overwrite=True)
        tip = control.toolTip()
        control.setToolTip(f"{tip} [{key}]" if tip else f"[{key}]")


# the labels layer's tools by key: napari's letters, and keys for the two whose only napari key is a digit
TOOL_KEYS = {"erase": "E", "paint": "P", "polygon": "Shift-P", "fill": "F", "pick": "L", "pan_zoom": "Z",
             "transform": "Shift-T"}
TOOL_NAMES = {"erase": "the eraser", "paint": "the brush", "polygon": "the polygon", "fill": "fill",
              "pick": "the label picker", "pan_zoom": "pan/zoom", "transform": "transform"}


def labels_help(mode: str) -> str:
    """napari's status hint for the labels layer, as the annotator binds the keys (1-9 pick classes)."""
    tools = [f"<{key}> {TOOL_NAMES[name]}" for name, key in TOOL_KEYS.items() if name != str(mode)]
    return "1-9 pick a class, " + ", ".join(tools) + ", Ctrl+Z undo"


def bind_layer_keys(layer, target) -> None:
    """Ctrl+Z / Ctrl+Shift+Z: target.undo() / target.redo(); 1-9: target.select_class(0..8); Shift-P and
    Shift-T: the polygon and transform tools (napari's keys for them are digits); M (napari's new label,
    which would be no class): target.no_new_label(). napari's status hint says so (labels_help)."""
    from app_model.types import KeyCode, KeyMod

    ref = weakref.ref(target)  # the layer must not keep the widget (and its viewer) alive

    def call(method, *args):
        def press(_layer):
            obj = ref()
            if obj is not None:
                getattr(obj, method)(*args)
        return press

    layer.bind_key(KeyMod.CtrlCmd | KeyCode.KeyZ, call("undo"), overwrite=True)
    layer.bind_key(KeyMod.CtrlCmd | KeyMod.Shift | KeyCode.KeyZ, call("redo"), overwrite=True)
    for n in range(1, 10):
        layer.bind_key(str(n), call("select_class", n - 1), overwrite=True)
    layer.bind_key("M", call("no_new_label"), overwrite=True)
    for mode in ("polygon", "transform"):
        def set_mode(lyr, mode=mode):
            lyr.mode = mode
        layer.bind_key(TOOL_KEYS[mode], set_mode, overwrite=True)

    def truthful_help(event=None):
        layer.help = labels_help(layer.mode)
        obj = ref()
        viewer = getattr(obj, "viewer", None) if obj is not None else None
        active = viewer.layers.selection.active if viewer is not None else None
        if active is not None and active.name == layer.name:  # (the widget's viewer may be a proxy)
            viewer.help = layer.help

    layer.events.mode.connect(truthful_help, position="last")  # after napari's own hint
    truthful_help()


def shown_key(key: str) -> str:
    """A napari key name as people write it ("Shift-R" -> "Shift+R")."""
    return key.replace("Control-", "Ctrl+").replace("-", "+")


def help_rows() -> list[tuple[str, str]]:
    """(key, what it does) for every key the annotator adds, then napari's labels keys it keeps: the keyboard
    help dialog and the README's table are made from these (tests/test_shortcut_help.py checks the README)."""
    from . import _wording as say

    rows = [(shown_key(key), say.SHORTCUT_WORDS[name]) for name, key in SHORTCUTS.items()]
    tools = ", ".join(TOOL_NAMES[name] for name in TOOL_KEYS)
    rows += [("1 … 9", say.LAYER_KEY_WORDS["classes"]),
             ("Ctrl+Z / Ctrl+Shift+Z", say.LAYER_KEY_WORDS["undo"]),
             (", ".join(shown_key(key) for key in TOOL_KEYS.values()),
              say.LAYER_KEY_WORDS["tools"].format(tools=tools)),
             ("M", say.LAYER_KEY_WORDS["new_label"])]
    return rows + list(say.NAPARI_KEY_WORDS)


def markdown_table() -> str:
    """help_rows() as the README's Markdown table."""
    lines = ["| key | action |", "|---|---|"]
    lines += [f"| {key} | {action} |" for key, action in help_rows()]
    return "\n".join(lines)


def qt_key(key: str) -> str:
    """A napari key name ("Shift-R", "PageDown", "Control-Z") as a QKeySequence string."""
    names = {"PageDown": "PgDown", "PageUp": "PgUp", "Control": "Ctrl"}
    return "+".join(names.get(part, part) for part in key.split("-"))


def bind_window_shortcuts(window, dock, target) -> list:
    """SHORTCUTS as Qt shortcuts of `window` (the viewer's main window), and Ctrl+Z / Ctrl+Shift+Z / 1-9 as
    shortcuts of `dock` and its children (on the canvas the labels layer's own bindings serve them).
    Returns the QShortcut objects (they live as long as their parents)."""
    from qtpy.QtCore import Qt
    from qtpy.QtGui import QKeySequence

    try:
        from qtpy.QtGui import QShortcut  # Qt 6
    except ImportError:
        from qtpy.QtWidgets import QShortcut  # Qt 5

    ref = weakref.ref(target)

    def make(parent, key, context, method, *args):
        shortcut = QShortcut(QKeySequence(qt_key(key)), parent)
        shortcut.setContext(context)

        def fire():
            obj = ref()
            if obj is not None:
                getattr(obj, method)(*args)

        shortcut.activated.connect(fire)
        return shortcut

    made = [make(window, key, Qt.ShortcutContext.WindowShortcut, "on_shortcut", name)
            for name, key in SHORTCUTS.items()]
    in_dock = Qt.ShortcutContext.WidgetWithChildrenShortcut
    made += [make(dock, "Control-Z", in_dock, "undo"), make(dock, "Control-Shift-Z", in_dock, "redo")]
    made += [make(dock, str(n), in_dock, "select_class", n - 1) for n in range(1, 10)]
    return made


if __name__ == "__main__":  # python -m maskclip_napari._shortcuts: the README's table
    print(markdown_table())
