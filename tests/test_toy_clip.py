"""The toy CLIP: synthetic scenes with ground truth, its model config, and (when built) what it learned."""
import numpy as np
import pytest
import torch

import maskclip
from maskclip import toy_clip
from maskclip.metrics import confusion_matrix, scores_from_confusion
from maskclip.prototypes import ClassPrototypes, LearnedTerm


def test_scenes_are_reproducible_and_captions_name_what_is_drawn():
    a, b = toy_clip.held_out_scenes(20), toy_clip.held_out_scenes(20)
    for s, t in zip(a, b):
        assert np.array_equal(s.image, t.image) and s.caption == t.caption
    for scene in a:
        assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
        assert 1 <= len(scene.objects) <= 3 and len(set(scene.objects)) == len(scene.objects)
        assert set(np.unique(scene.labels)) <= set(scene.objects) | {toy_clip.BACKGROUND_LABEL}
        assert all(toy_clip.CLASS_NAMES[i] in scene.caption for i in scene.objects)
        for i in scene.objects:  # each shape keeps its colour where it is visible
            colour = np.array(list(toy_clip.COLOURS.values())[i // 3])
            if (scene.labels == i).sum() > 10:
                assert np.abs(scene.image[scene.labels == i].mean(axis=0) - colour).max() < 40
    assert toy_clip.caption_for((0, 4)) == "a red circle and a green square"
    assert toy_clip.caption_for((0, 4, 11)) == "a red circle, a green square and a yellow triangle"


def test_multi_positive_loss_counts_captions_of_the_same_set_as_positives():
    emb = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    same = toy_clip._multi_positive_loss(emb, emb, [(0, 1), (1, 0), (2,)], torch.tensor(10.0))
    distinct = toy_clip._multi_positive_loss(emb, emb, [(0, 1), (3,), (2,)], torch.tensor(10.0))
    assert same.item() != pytest.approx(distinct.item())
    # two identical pairs whose sets match: the loss with merged positives is the 2-way uniform target
    twin = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1.0, 0]]), dim=-1)
    assert toy_clip._multi_positive_loss(twin, twin, [(0,), (0,)], torch.tensor(1.0)).item() == pytest.approx(
        np.log(2), abs=1e-6)


def test_a_short_training_run_writes_a_checkpoint_maskclip_loads(tmp_path):
    torch.manual_seed(0)
    path = toy_clip.train(tmp_path / "toy.pt", steps=2, batch_size=4, warmup=1, log=lambda *_: None)
    model = maskclip.load(toy_clip.MODEL_NAME, pretrained=path, device="cpu")
    assert model.stride == 8 and model.text.tokenizer.context_length == 24
    seg = model.segment(toy_clip.held_out_scenes(1)[0].image, toy_clip.CLASS_NAMES,
                        background=list(toy_clip.BACKGROUND_PROMPTS), scales=(64,))
    assert seg.probs.shape == (13, 64, 64)
    assert 0.0 <= toy_clip.retrieval_accuracy(model, toy_clip.held_out_scenes(4)) <= 1.0


@pytest.fixture(scope="module")
def toy_checkpoint():
    path = toy_clip.find_checkpoint()
    if path is None:
        pytest.skip("toy CLIP not built (python -m maskclip.toy_clip)")
    return path


def _miou(model, scenes, learned=None) -> float:
    cm = 0
    for s in scenes:
        seg = model.segment(s.image, toy_clip.CLASS_NAMES, background=list(toy_clip.BACKGROUND_PROMPTS),
                            scales=(64,), learned=learned)
        cm = cm + confusion_matrix(s.labels, seg.labels, toy_clip.NUM_LABELS)
    return scores_from_confusion(cm, [str(i) for i in range(toy_clip.NUM_LABELS)])["mIoU"]


@pytest.mark.slow
def test_toy_clip_reads_scenes_and_corrections_add_to_its_text(toy_checkpoint):
    scenes = toy_clip.held_out_scenes(80)
    evaluation, teaching = scenes[:60], scenes[60:]
    names = toy_clip.CLASS_NAMES + ["background"]
    for mode in ("maskclip", "sclip"):
        model = maskclip.load(toy_clip.MODEL_NAME, pretrained=toy_checkpoint, device="cpu", dense_mode=mode)
        # a short trial build (600 steps of 96) passes too; the full recipe reaches ~0.9 retrieval
        assert toy_clip.retrieval_accuracy(model, scenes) > 0.5  # chance ~0.01
        text_only = _miou(model, evaluation)
        assert text_only > 0.1  # chance ~0.014: real semantics, end to end
        prototypes = ClassPrototypes()
        for i, s in enumerate(teaching):
            features = model.image_features(s.image, scales=(64,))[0]["features"]
            prototypes.set_image(str(i), [features], s.labels, np.ones(s.labels.shape, bool), names)
        learned = _miou(model, evaluation, LearnedTerm(prototypes, 0.5))
        # measured with the full build on these scenes: maskclip 0.274 -> 0.255, sclip 0.308 -> 0.346
        # (bench/results.md has the 200-scene numbers): the term adds to SCLIP's text and costs MaskCLIP's little
        if mode == "sclip":
            assert learned > text_only + 0.02
        else:
            assert learned > text_only - 0.04


def _teaching_project(tmp_path, scenes):
    from PIL import Image

    from maskclip.project import Project

    paths = []
    for i, s in enumerate(scenes):
        paths.append(tmp_path / f"s{i}.png")
        Image.fromarray(s.image).save(paths[-1])
    project = Project.create(tmp_path / "p", paths, classes=toy_clip.CLASS_NAMES)
    for image_id, s in zip(project.image_ids, scenes):
        labels = np.where(s.labels == toy_clip.BACKGROUND_LABEL, 255, s.labels).astype(np.uint8)
        project.set_labels(image_id, labels, np.ones(labels.shape, bool))  # background confirmed
    return project


@pytest.mark.slow
@pytest.mark.xfail(reason="issue 19's target, not met yet: measured here sclip 0.301 -> 0.284, and with "
                          "MaskCLIP's key smoothing the learned scores cost more (bench/results.md)", strict=False)
@pytest.mark.parametrize("mode", ["sclip", "maskclip"])
def test_learning_from_five_verified_scenes_is_not_worse_than_the_text(toy_checkpoint, tmp_path, mode):
    """The project path (`project segment --learn-from-verified`, default learner and settings): issue 19's
    floor, text only - 0.005 mIoU. Marked xfail until a learner meets it; XPASS means it does."""
    from maskclip.learner import project_learner
    from maskclip.settings import learn_spec

    scenes = toy_clip.held_out_scenes(45)
    evaluation, teaching = scenes[:40], scenes[40:]
    model = maskclip.load(toy_clip.MODEL_NAME, pretrained=toy_checkpoint, device="cpu", dense_mode=mode)
    project = _teaching_project(tmp_path, teaching)
    learner = project_learner(learn_spec(project.settings)["learner"], {"scales": (64,)})
    assert learner.sync(model, project) == 5
    assert _miou(model, evaluation, learner.term()) >= _miou(model, evaluation) - 0.005
