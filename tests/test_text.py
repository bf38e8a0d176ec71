"""Prompt templates, class validation and the text embedding cache."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from maskclip.errors import MaskCLIPError
from maskclip.text import TEMPLATES, encode_text_cropped, normalize_classes, parse_classes_file, parse_classes_text


def test_85_distinct_templates_each_with_one_slot():
    assert len(TEMPLATES) == 85 and len(set(TEMPLATES)) == 85
    assert all(t.count("{}") == 1 for t in TEMPLATES)
    assert "a photo of a {}." in TEMPLATES and "there is a {} in the scene." in TEMPLATES


def test_class_embedding_is_the_normalised_template_average(tiny_vit):
    model = tiny_vit
    with torch.no_grad():
        tokens = model.text.tokenizer([t.format("zebra") for t in TEMPLATES])
        per_prompt = F.normalize(model.clip.encode_text(tokens), dim=-1)
    expected = F.normalize(per_prompt.mean(0), dim=-1)
    got = model.encode_text(["zebra"])
    assert got.shape == (1, per_prompt.shape[1])
    torch.testing.assert_close(got[0], expected, rtol=1e-5, atol=1e-6)
    # synonyms: the normalised mean of the names' embeddings
    both = model.encode_text([["zebra", "okapi"]])[0]
    torch.testing.assert_close(both, F.normalize(model.text.name_embeddings(["zebra", "okapi"]).mean(0), dim=0))
    assert torch.allclose(model.encode_text(["zebra", "okapi"]).norm(dim=1), torch.ones(2))


@pytest.mark.parametrize("fixture", ["tiny_vit", "tiny_rn"])
def test_cropped_text_encoding_equals_open_clip(fixture, request):
    """Skipping the padding after the last end-of-text token must not change any embedding."""
    clip = request.getfixturevalue(fixture).clip
    prompts = ["a cat.", "a photo of a very large and rather unusual traffic light in the rain.", "x " * 100]
    tokens = request.getfixturevalue(fixture).text.tokenizer(prompts)
    with torch.inference_mode():
        torch.testing.assert_close(encode_text_cropped(clip, tokens), clip.encode_text(tokens),
                                   rtol=1e-5, atol=1e-5)
        # a tower pooled at the last position (not at end-of-text) runs uncropped
        clip.text_pool_type = "last"
        try:
            torch.testing.assert_close(encode_text_cropped(clip, tokens), clip.encode_text(tokens))
        finally:
            clip.text_pool_type = "argmax"


def test_text_embeddings_are_cached_per_name(tiny_vit):
    model = tiny_vit
    model.encode_text(["lamp", "chair"])
    before = model.text.prompts_encoded
    model.encode_text(["chair", "lamp"])
    assert model.text.prompts_encoded == before
    model.encode_text(["chair", "lamp", "sofa"])  # one new class costs exactly its 85 prompts
    assert model.text.prompts_encoded == before + 85


@pytest.mark.parametrize("bad,match", [
    ([""], "empty or blank"), (["  "], "empty or blank"), (["car", []], "empty or blank"),
    (["car", "Car"], "duplicate"), (["car", ["auto", "car"]], "duplicate"),
])
def test_bad_class_lists_are_rejected(bad, match):
    with pytest.raises(MaskCLIPError, match=match):
        normalize_classes(bad)


def test_a_single_string_is_not_a_class_list():
    with pytest.raises(MaskCLIPError, match="list of names"):
        normalize_classes("car")


def test_classes_file_parsing(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("# my classes\nroad\n\ncar, automobile , auto\n  sky\n")
    assert parse_classes_file(path) == [["road"], ["car", "automobile", "auto"], ["sky"]]
    with pytest.raises(MaskCLIPError, match="blank"):
        parse_classes_text("road\ncar,,auto\n")
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    with pytest.raises(MaskCLIPError, match="no classes"):
        parse_classes_file(tmp_path / "empty.txt")
    with pytest.raises(MaskCLIPError, match="cannot read"):
        parse_classes_file(tmp_path / "missing.txt")


def test_prompts_longer_than_the_context_are_truncated_with_a_warning(tiny_vit):
    long_name = " ".join(["extraordinarily"] * 80)
    with pytest.warns(UserWarning, match="too long"):
        emb = tiny_vit.encode_text([long_name])
    assert torch.isfinite(emb).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_vit.encode_text(["short name"])
