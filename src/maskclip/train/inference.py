"""The trained student on whole images (refine): one image, or several of one size per forward pass.

`predict` is what the benchmarks score; `BatchedPredictions` is refine's predictor: `maskclip.batch.run_batch`
asks for one image at a time, and on a GPU it answers from a forward pass over the next `batch` images of the
same size (CamVid, a camera's frames: all of them). An image that cannot be read fails alone, as in the loop.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..precision import autocast
from .data import normalise, prediction_size, to_float_rgb

REFINE_BATCH_CUDA = 8  # images per forward pass on a GPU (a 480x360 image at short side 512 through DeepLab-R101)


@torch.inference_mode()
def predict_batch(student, images: Sequence[np.ndarray], base_size: int | None, device: torch.device,
                  dtype: torch.dtype | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(labels int32 HxW, confidence float32 HxW) of each image at full resolution; all images of one size.
    The student's forward pass is autocast to `dtype` (CUDA only: `maskclip.precision.autocast_dtype`)."""
    rgb = torch.stack([torch.from_numpy(to_float_rgb(image)).permute(2, 0, 1) for image in images])
    h, w = rgb.shape[-2:]
    size = prediction_size(h, w, base_size)
    x = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=size[0] < h)
    with autocast(device, dtype):
        logits = student(normalise(x).to(device)).float()
    logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    conf, labels = logits.softmax(dim=1).max(dim=1)
    labels, conf = labels.to(torch.int32).cpu().numpy(), conf.cpu().numpy()
    return [(labels[i], conf[i]) for i in range(len(images))]


def predict(student, image: np.ndarray, base_size: int | None, device: torch.device,
            dtype: torch.dtype | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(labels int32 HxW, confidence float32 HxW) of one image at its full resolution."""
    return predict_batch(student, [image], base_size, device, dtype)[0]


class BatchedPredictions:
    """predict(image_id) for `ids` in their order, computed `batch` images at a time (grouped by size).

    read(image_id) gives the image; an error of a type in `errors` while reading one is raised when that image
    is asked for, so the caller's loop reports it and goes on. batch=1 is `predict` image by image.
    """

    def __init__(self, student, ids: Sequence[str], read: Callable[[str], np.ndarray], base_size: int | None,
                 device: torch.device, dtype: torch.dtype | None, batch: int,
                 errors: tuple[type[BaseException], ...]):
        self.student, self.ids, self.read = student, list(ids), read
        self.base_size, self.device, self.dtype, self.batch, self.errors = base_size, device, dtype, batch, errors
        self._position = {image_id: n for n, image_id in enumerate(self.ids)}
        self._ready: dict[str, object] = {}

    def __call__(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        if image_id not in self._ready:
            self._fill(self._position[image_id])
        result = self._ready.pop(image_id)
        if isinstance(result, BaseException):
            raise result
        return result

    def _fill(self, start: int) -> None:
        """Read the next `batch` images from `start` and predict them, one forward pass per image size."""
        by_size: dict[tuple, list[tuple[str, np.ndarray]]] = defaultdict(list)
        for image_id in self.ids[start:start + self.batch]:
            if image_id in self._ready:
                continue
            try:
                image = self.read(image_id)
            except self.errors as exc:
                self._ready[image_id] = exc
                continue
            by_size[image.shape[:2]].append((image_id, image))
        for group in by_size.values():
            results = predict_batch(self.student, [image for _, image in group], self.base_size, self.device,
                                    self.dtype)
            self._ready.update({image_id: result for (image_id, _), result in zip(group, results)})
