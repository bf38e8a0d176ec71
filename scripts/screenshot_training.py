"""Make the training screenshot (a development script, not installed):
`xvfb-run -a .venv/bin/python scripts/screenshot_training.py docs/screenshot_training.png`.

It stages the bundled sample photos segmented by a tiny random-weight CLIP (no weights can be downloaded
where the docs are built), starts "Refine dataset (MaskCLIP+)" with the light LR-ASPP student on the CPU,
and takes the picture while the child process trains (progress, ETA and the loss curve visible; the
student has no ImageNet weights here, so the automatic choice keeps it on MaskCLIP's labels throughout).
Closing the viewer afterwards cancels the run, as quitting napari does.
"""
from __future__ import annotations

import os
import shutil
import sys
import time

ITERS = 240
SHOOT_AT = 150  # iteration


def main(out: str) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the training child inherits it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # scripts/: the annotator screenshot's staging
    from screenshot_annotator import stage_sample_session
    from maskclip_napari._training import read_progress

    import torch

    viewer, widget, app, work = stage_sample_session()

    def wait(condition, timeout=300.0):
        end = time.time() + timeout
        while not condition() and time.time() < end:
            app.processEvents()
            time.sleep(0.02)

    torch.manual_seed(0)
    widget.segment_all()
    wait(lambda: widget._worker is None)
    widget.show_image("astronaut")
    wait(lambda: widget._worker is None)

    section = widget.training
    section.configure(iters=ITERS, student="lraspp_mobilenet_v3_large", device="cpu", batch_size=4, crop_size=128,
                      base_size=160, imagenet=False)
    section.start()
    wait(lambda: (read_progress(section.run_dir) or {}).get("iteration", 0) >= SHOOT_AT)
    section.poll()
    viewer.reset_view()
    widget._scroll.ensureWidgetVisible(section.plot, 0, 10)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    viewer.screenshot(out, canvas_only=False)
    print(f"{out}: {section.status_label.text()}")
    viewer.close()  # cancels the training child (SIGTERM, checkpoint) and waits for it
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot_training.png"))
