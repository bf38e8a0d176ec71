"""maskclip-napari: the napari plugin (MaskCLIP Annotator widget, reader, writer, sample data).

Importing the plugin changes nothing in the napari process: the widget's entry point (`_annotator`) imports
torch's stack with triton hidden for that import only (`_torch_env` says why).
"""
