"""Learning from verified pixels: class prototypes, their incremental updates and the blended scores."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskclip.errors import MaskCLIPError
from maskclip.prototypes import ClassPrototypes, LearnedTerm, ProjectPrototypes, patch_class_weights
from maskclip.project import Project

SCALES = (128,)
KW = {"scales": SCALES, "background": []}


def two_tone(seed: int, split: int, height: int = 96, width: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    img[:split] = (200, 40, 40)
    img[split:] = (40, 40, 200)
    return np.clip(img.astype(int) + rng.integers(-15, 16, img.shape), 0, 255).astype(np.uint8)


def swapped_truth(model, image, split, classes):
    """Labels that contradict what the random-weight text says about the two halves (so only learning
    from the verified pixels can get them right)."""
    text = model.segment(image, classes, **KW).labels
    top = int(np.bincount(text[:split].ravel(), minlength=2).argmax())
    truth = np.full(image.shape[:2], 1 - top, np.uint8)
    truth[split:] = top
    return truth


def features_of(model, image):
    return [m["features"] for m in model.image_features(image, scales=SCALES)]


def test_prototype_is_the_weighted_mean_of_unit_features_under_verified_pixels():
    torch.manual_seed(0)
    features = torch.randn(8, 3, 4)
    labels = np.zeros((6, 8), np.uint8)
    labels[:, 4:] = 1
    verified = np.zeros((6, 8), bool)
    verified[:2, :2] = True  # exactly patch (0, 0) of class 0
    verified[:, 7:] = True  # half of patches (r, 3) of class 1
    p = ClassPrototypes()
    p.set_image("a", [features], labels, verified, ["a", "b"])
    unit = F.normalize(features.flatten(1), dim=0)
    known, vectors = p.vectors(["a", "b", "c"])
    assert known.tolist() == [True, True, False] and not vectors[2].any()
    assert torch.allclose(vectors[0], unit[:, 0], atol=1e-6)
    # each of the three patches half covered: equal weights, so the mean's direction is their sum's
    assert torch.allclose(vectors[1], F.normalize(unit[:, [3, 7, 11]].sum(dim=1), dim=0), atol=1e-6)
    assert p.known() == pytest.approx({"a": 1.0, "b": 1.5})


def test_updates_are_incremental_and_equal_a_fresh_build():
    torch.manual_seed(1)
    maps = {i: [torch.randn(8, 3, 4)] for i in "xyz"}
    rng = np.random.default_rng(0)
    labels = {i: rng.integers(0, 3, (6, 8)).astype(np.uint8) for i in "xyz"}
    first = {i: rng.random((6, 8)) < 0.3 for i in "xyz"}
    second = rng.random((6, 8)) < 0.6
    names = ["a", "b", "c"]
    p = ClassPrototypes()
    for i in "xyz":
        p.set_image(i, maps[i], labels[i], first[i], names)
    p.set_image("y", maps["y"], labels["y"], second, names)  # a new stroke on y replaces only y's share
    p.remove_image("z")
    fresh = ClassPrototypes()
    fresh.set_image("x", maps["x"], labels["x"], first["x"], names)
    fresh.set_image("y", maps["y"], labels["y"], second, names)
    assert p.image_ids == ["x", "y"]
    assert torch.allclose(p.vectors(names)[1], fresh.vectors(names)[1], atol=1e-6)
    assert p.known() == pytest.approx(fresh.known())
    p.remove_image("x"), p.remove_image("y")
    assert p.known() == {} and not p.vectors(names)[0].any()


def test_blend_keeps_unknown_classes_and_is_identity_at_weight_zero():
    torch.manual_seed(2)
    scores = torch.rand(3, 12) * 0.3  # text cosines of classes a, b, c at 12 patches
    features = torch.randn(8, 12)
    p = ClassPrototypes()
    labels = np.zeros((3, 4), np.uint8)
    labels[:, 2:] = 1
    p.set_image("a", [features.view(8, 3, 4)], labels, np.ones((3, 4), bool), ["a", "b", "c"])
    names = ["a", "b", "c"]
    assert torch.equal(LearnedTerm(p, 0.0).blend(scores, features, names), scores)
    out = LearnedTerm(p, 1.0).blend(scores, features, names)
    assert torch.equal(out[2], scores[2])  # class c has no verified pixel: its text score stays
    known, vectors = p.vectors(names)
    visual = vectors[:2] @ F.normalize(features, dim=0)
    # at each patch the known classes keep the text scores' mean, with the visual cosines' differences
    assert torch.allclose(out[:2].mean(dim=0), scores[:2].mean(dim=0), atol=1e-6)
    assert torch.allclose(out[0] - out[1], visual[0] - visual[1], atol=1e-6)
    half = LearnedTerm(p, 0.5).blend(scores, features, names)
    assert torch.allclose(half[:2], 0.5 * scores[:2] + 0.5 * out[:2], atol=1e-6)
    with pytest.raises(MaskCLIPError, match="weight"):
        LearnedTerm(p, 1.5).blend(scores, features, names)
    with pytest.raises(MaskCLIPError, match="another model"):
        LearnedTerm(p, 0.5).blend(scores, torch.randn(5, 12), names)


def test_thin_strokes_count_by_the_share_of_the_patch_they_cover():
    labels = np.zeros((32, 32), np.uint8)
    verified = np.zeros((32, 32), bool)
    verified[5, :] = True  # a 1-pixel line through the first row of 8x8-pixel patches
    share = patch_class_weights(labels, verified, (4, 4), [0])[0]
    assert share[:4].tolist() == pytest.approx([1 / 8] * 4) and share[4:].sum() == 0


def test_verified_pixels_teach_other_images(tiny_vit):
    classes = ["sky", "road"]
    taught, other = two_tone(0, 48), two_tone(1, 30)
    truth = swapped_truth(tiny_vit, taught, 48, classes)
    other_truth = swapped_truth(tiny_vit, other, 30, classes)
    verified = np.zeros(truth.shape, bool)
    verified[10:20] = verified[70:80] = True  # two strokes, one per class
    p = ClassPrototypes()
    p.set_image("taught", features_of(tiny_vit, taught), truth, verified, classes)
    text_only = (tiny_vit.segment(other, classes, **KW).labels == other_truth).mean()
    learned = (tiny_vit.segment(other, classes, learned=LearnedTerm(p, 1.0), **KW).labels == other_truth).mean()
    assert text_only < 0.2 and learned > 0.9


@pytest.fixture
def project(tmp_path):
    from PIL import Image

    src = tmp_path / "images"
    src.mkdir()
    for seed, split in ((0, 48), (1, 30), (2, 60)):
        Image.fromarray(two_tone(seed, split)).save(src / f"img{seed}.png")
    return Project.create(tmp_path / "proj", src, ["sky", "road"])


def test_project_prototypes_reread_only_changed_images(tiny_vit, project):
    ids = project.image_ids
    labels = np.zeros((96, 128), np.uint8)
    labels[48:] = 1
    project.set_labels(ids[0], labels, verified=labels == 1)
    learner = ProjectPrototypes(SCALES)
    assert learner.pending(tiny_vit, project) == [ids[0]]
    assert learner.sync(tiny_vit, project) == 1 and list(learner.prototypes.known()) == ["road"]
    assert learner.sync(tiny_vit, project) == 0
    project.set_labels(ids[1], labels, verified=np.ones_like(labels, bool))
    version = learner.prototypes.version
    assert learner.pending(tiny_vit, project) == [ids[1]]
    assert learner.sync(tiny_vit, project) == 1 and learner.prototypes.version == version + 1
    assert sorted(learner.prototypes.known()) == ["road", "sky"]
    project.clear_labels(ids[1])  # its verified pixels are gone: its share goes too
    assert learner.sync(tiny_vit, project) == 1 and list(learner.prototypes.known()) == ["road"]
    project.rename_class("road", "street")  # class names changed: start over
    assert learner.pending(tiny_vit, project) == [ids[0]]
    learner.sync(tiny_vit, project)
    assert list(learner.prototypes.known()) == ["street"]


def test_project_segment_learns_from_verified_pixels(tiny_vit, project, capsys, monkeypatch):
    import maskclip
    from maskclip.cli import main

    monkeypatch.setattr(maskclip, "load", lambda *args, **kwargs: tiny_vit)  # the session's tiny model
    project.set_background([])
    project.update_settings({"model": {"name": "maskclip-tiny-vit", "pretrained": None},
                             "method": {"scales": list(SCALES)}})
    taught, other = project.image_ids[:2]
    truth = swapped_truth(tiny_vit, project.get_image(taught), 48, ["sky", "road"])
    other_truth = swapped_truth(tiny_vit, project.get_image(other), 30, ["sky", "road"])
    strokes = np.zeros(truth.shape, bool)
    strokes[10:20] = strokes[70:80] = True
    project.set_labels(taught, np.where(strokes, truth, 255).astype(np.uint8), verified=strokes)

    assert main(["project", "segment", str(project.root), "--device", "cpu"]) == 0
    assert "learned" not in capsys.readouterr().out  # off unless asked for (or set in the project)
    assert (project.get_labels(other) == other_truth).mean() < 0.2
    assert main(["project", "segment", str(project.root), "--device", "cpu", "--learn-from-verified"]) == 0
    assert "learned (text-prior) from the verified pixels of 1 images: 2 classes (sky, road), text as the prior" \
        in capsys.readouterr().out  # the default learner (maskclip.learner)
    assert (project.get_labels(other) == other_truth).mean() > 0.9
    assert main(["project", "segment", str(project.root), "--device", "cpu", "--learn-from-verified",
                 "--learner", "prototypes", "--weight", "1"]) == 0
    assert "learned (prototypes) from the verified pixels of 1 images: 2 classes (sky, road), weight 1.0" \
        in capsys.readouterr().out
    assert (project.get_labels(other) == other_truth).mean() > 0.9
    labels, verified = project.get_labels_and_verified(taught)
    assert (verified == strokes).all() and (labels[strokes] == truth[strokes]).all()  # never overwritten

    project.update_settings({"learn": {"from_verified": True, "learner": "prototypes", "weight": 0.0}})
    assert main(["project", "segment", str(project.root), "--device", "cpu"]) == 0
    assert "weight 0.0" in capsys.readouterr().out and (project.get_labels(other) == other_truth).mean() < 0.2
    project.update_settings({"learn": {"from_verified": False}})
    with pytest.raises(SystemExit) as exit_info:  # refused while parsing, before any work
        main(["project", "segment", str(project.root), "--device", "cpu", "--weight", "2"])
    assert exit_info.value.code == 2
    assert "--weight must lie in [0, 1], got '2'" in capsys.readouterr().err


def test_another_project_starts_over(tiny_vit, project, tmp_path):
    labels = np.ones((96, 128), np.uint8)
    project.set_labels(project.image_ids[0], labels, verified=labels == 1)
    learner = ProjectPrototypes(SCALES)
    learner.sync(tiny_vit, project)
    other = Project.create(tmp_path / "other", project.root / "images", ["sky", "road"])
    assert learner.pending(tiny_vit, other) == [] and learner.prototypes.known() == {}
