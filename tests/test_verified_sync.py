"""Keeping a learner in step with the project (maskclip.verified_sync): a stored prediction bumps the image's
label revision but teaches nothing new, so the learner must not change (a change means a refit, ~1 s in the
annotator's worker per redraw at 12 Mpx); a real correction must still reach it."""
import numpy as np
from PIL import Image

from maskclip.learner import ProjectLearner
from maskclip.project import Project

SCALES = (64,)


def test_a_stored_prediction_does_not_change_the_learner_but_a_correction_does(tiny_vit, tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(paths[-1])
    project = Project.create(tmp_path / "p", paths, classes=["sky", "road"])
    first = project.image_ids[0]
    labels = np.full((64, 64), 255, np.uint8)
    labels[:32] = 1
    verified = np.zeros((64, 64), bool)
    verified[:32] = True
    project.set_labels(first, labels, verified)
    learner = ProjectLearner(SCALES)
    assert learner.sync(tiny_vit, project) == 1
    version = learner.version

    project.merge_prediction(first, np.zeros((64, 64), np.uint8))  # unverified half only: verified kept
    assert learner.pending(tiny_vit, project) == [first]  # a new revision: re-read ...
    assert learner.sync(tiny_vit, project) == 1
    assert learner.version == version  # ... but nothing new to learn
    assert learner.pending(tiny_vit, project) == []

    labels[:32] = 0  # the annotator corrects the verified half to "sky"
    project.set_labels(first, labels, verified)
    assert learner.sync(tiny_vit, project) == 1
    assert learner.version != version
    assert set(learner.taught()) == {"sky"}
