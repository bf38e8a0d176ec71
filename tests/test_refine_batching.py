"""Refine's student predictions, several images per forward pass (issue 18 item 4: batched images on a GPU):
the same labels as one image at a time, images of other sizes in their own pass, an unreadable image failing
alone. Checked on the CPU, where refine itself predicts one image at a time."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from maskclip.errors import ImageReadError
from maskclip.train.inference import BatchedPredictions, predict
from maskclip.train.student import build_student, random_class_embeddings


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_student("lraspp_mobilenet_v3_large", random_class_embeddings(3, 16),
                         imagenet_backbone=False).eval()


def test_batches_give_the_labels_of_one_image_at_a_time(student):
    rng = np.random.default_rng(0)
    shapes = [(40, 56), (40, 56), (48, 40), (40, 56), (40, 56)]
    images = {f"im{i}": rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for i, shape in enumerate(shapes)}
    images["bad"] = None
    ids = ["im0", "im1", "bad", "im2", "im3", "im4"]
    reads = []

    def read(image_id):
        reads.append(image_id)
        if images[image_id] is None:
            raise ImageReadError(f"{image_id}: unreadable")
        return images[image_id]

    cpu = torch.device("cpu")
    batched = BatchedPredictions(student, ids, read, 48, cpu, None, batch=4, errors=(ImageReadError,))
    for image_id in ids:
        if image_id == "bad":
            with pytest.raises(ImageReadError):
                batched(image_id)
            continue
        labels, conf = batched(image_id)
        one_labels, one_conf = predict(student, images[image_id], 48, cpu)
        assert labels.shape == images[image_id].shape[:2] and labels.dtype == np.int32
        np.testing.assert_array_equal(labels, one_labels)
        np.testing.assert_allclose(conf, one_conf, rtol=0, atol=1e-5)
    assert reads == ids  # each image read once, in order: four in the first pass, the last two in the next
    assert not batched._ready  # every result handed out
