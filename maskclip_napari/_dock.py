"""Finding or docking the one annotator widget of a viewer (the reader, the launcher and the tests share it)."""
from __future__ import annotations

from pathlib import Path

PLUGIN = "maskclip-napari"
WIDGET = "MaskCLIP Annotator"
MANIFEST = Path(__file__).with_name("napari.yaml")


def ensure_registered() -> None:
    """Register the manifest with npe2 when the package is used from a source tree that was not installed."""
    from npe2 import PluginManager

    pm = PluginManager.instance()
    try:
        pm.get_manifest(PLUGIN)
    except KeyError:
        pm.register(str(MANIFEST))


def dock_annotator(viewer):
    """The viewer's annotator widget, docked on first use (napari keeps one instance per viewer)."""
    ensure_registered()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    return widget
