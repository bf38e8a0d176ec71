"""maskclip-napari: the napari plugin (MaskCLIP Annotator widget, reader, writer, sample data).

Importing the plugin changes nothing in the napari process, and neither importing it nor docking the widget
imports torch: the worker that loads a model does, with triton hidden for that import only (`_torch_env`).
"""
