"""The annotator's keyboard shortcuts as napari keybindings.

SHORTCUTS are viewer-wide (none is one of napari's default keys for any layer); on the labels layer,
Ctrl+Z / Ctrl+Shift+Z undo and redo labels and verified pixels together and the number keys 1-9 pick
classes instead of napari's mode keys, whose letter keys (E, P, F, L, Z) stay. Bindings hold their target
only weakly: a strong reference kept closed viewers (and their widgets) alive.
"""
from __future__ import annotations

import weakref

SHORTCUTS = {
    "next_image": "PageDown",
    "previous_image": "PageUp",
    "segment_current": "G",
    "mark_reviewed": "Shift-R",
    "verify_selected_class": "Shift-C",
    "toggle_key_smoothing": "K",
    "toggle_prompt_denoising": "Shift-D",
}


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


def bind_layer_keys(layer, target) -> None:
    """Ctrl+Z / Ctrl+Shift+Z: target.undo() / target.redo(); 1-9: target.select_class(0..8)."""
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
