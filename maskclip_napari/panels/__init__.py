"""The annotator dock's panels. Each is a plain Qt widget that shows what it is given and talks upward by Qt
signals; none imports the widget (`maskclip_napari._widget.AnnotatorWidget` composes them and connects them).

- images: open / add images, the image list, navigation, Reviewed ✓ / Class ✓, the stale-image notice;
- classes: the class editor and the brush line;
- method: dense mode, key smoothing, prompt denoising, threshold, scale, learning, Segment / Cancel and
  the model, weights and device;
- export: format, verified only, VOC validation share, Export…;
- training: "Refine dataset (MaskCLIP+)", training and refine in a child process;
- status: the message line, what is under the cursor and the busy bar (top of the dock).
"""
