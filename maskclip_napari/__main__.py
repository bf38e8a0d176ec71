"""`python -m maskclip_napari [PATH]` or `maskclip-annotate [PATH]`: napari with the MaskCLIP Annotator docked
and images loaded.

PATH is an image folder, an annotation project folder, or omitted for the bundled sample photos (their
project lives in the user cache folder so a source checkout stays clean).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from maskclip.defaults import DEFAULT_DEVICE, DEFAULT_MODEL, DEFAULT_PRETRAINED, DEVICE_CHOICES


def build_parser() -> argparse.ArgumentParser:
    launcher = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else ""
    prog = "maskclip-annotate" if launcher == "maskclip-annotate" else "python -m maskclip_napari"
    p = argparse.ArgumentParser(prog=prog, description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("path", nargs="?", type=Path,
                   help="image folder or project folder (default: the bundled sample photos)")
    p.add_argument("--project", type=Path, default=None,
                   help="where to keep the annotation project of an image folder (default: a "
                        "'maskclip-project' folder inside it)")
    p.add_argument("--classes-file", type=Path, default=None,
                   help="classes for a new project: one per line, synonyms separated by commas")
    p.add_argument("--model", default=None, help=f"open_clip architecture (default {DEFAULT_MODEL})")
    p.add_argument("--weights", default=None, help="open_clip weights tag or a local checkpoint file "
                                                   f"(default {DEFAULT_PRETRAINED})")
    p.add_argument("--device", default=None, choices=list(DEVICE_CHOICES), help=f"default {DEFAULT_DEVICE}")
    p.add_argument("--screenshot", type=Path, default=None,
                   help="save a screenshot of the window to this PNG after start-up and quit (for docs)")
    return p


def _fit_to_screen(viewer, most=(1600, 1000)) -> None:
    """Open large enough for the image beside the docked annotator (napari's first-run window is small)."""
    from qtpy.QtWidgets import QApplication

    screen = QApplication.primaryScreen()
    if screen is None:
        return
    free = screen.availableGeometry()
    width, height = min(most[0], int(free.width() * 0.9)), min(most[1], int(free.height() * 0.9))
    window = viewer.window._qt_window
    if window.width() < width or window.height() < height:
        window.resize(max(window.width(), width), max(window.height(), height))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import napari

    from ._dock import dock_annotator
    from ._sample_data import sample_classes_file, sample_folder, sample_project_dir

    path, project, classes_file = args.path, args.project, args.classes_file
    if path is None:
        path = sample_folder()
        project = project or sample_project_dir(path)
        classes_file = classes_file or sample_classes_file()
    viewer = napari.Viewer(title="MaskCLIP Annotator")
    _fit_to_screen(viewer)
    widget = dock_annotator(viewer)
    widget.set_model_choice(model=args.model, weights=args.weights, device=args.device)
    from qtpy.QtCore import QTimer

    if args.screenshot is not None:  # the screenshot needs the project shown: open it before the loop
        if not widget.open_path(path, project_dir=project, classes_file=classes_file):
            print(f"error: {widget.message_text()}", file=sys.stderr)
        QTimer.singleShot(0, viewer.reset_view)  # fit the image once the window has its final layout
    else:  # read in a worker: the window shows at once, the image when read (fitted to the view then)
        widget.open_path(path, project_dir=project, classes_file=classes_file, background=True)
    if args.screenshot is not None:
        def shoot():
            viewer.screenshot(str(args.screenshot), canvas_only=False)
            viewer.close()

        QTimer.singleShot(1500, shoot)
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
