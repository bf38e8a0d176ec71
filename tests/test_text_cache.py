"""Issue 17 item 6 (text half): class text embeddings persist in the cache folder, keyed by model, weights
identity, activation, template set and name, and are reused by the next model with the same weights."""
from __future__ import annotations

import pytest
import torch

import maskclip
from maskclip.text import TEXT_CACHE_SUBFOLDER, TextEncoder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    maskclip.load("maskclip-tiny-vit", pretrained=None, device="cpu").save_checkpoint(path)
    return path


def _load(checkpoint, cache, **kw):
    return maskclip.load("maskclip-tiny-vit", pretrained=checkpoint, device="cpu", cache_dir=cache, **kw)


def test_second_model_embeds_nothing(checkpoint, tmp_path):
    first = _load(checkpoint, tmp_path)
    emb = first.encode_text(["road", ["car", "automobile"]])
    assert first.text.prompts_encoded == 3 * len(first.text.templates)
    assert len(list((tmp_path / TEXT_CACHE_SUBFOLDER).glob("*.pt"))) == 3

    second = _load(checkpoint, tmp_path)
    again = second.encode_text(["road", ["car", "automobile"]])
    assert second.text.prompts_encoded == 0
    torch.testing.assert_close(again, emb, rtol=0, atol=0)
    second.encode_text(["road", "sky"])  # only the new name goes through the text tower
    assert second.text.prompts_encoded == len(second.text.templates)


def test_segment_reuses_stored_prompts(checkpoint, tmp_path):
    import numpy as np

    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    labels = _load(checkpoint, tmp_path).segment(image, ["road", "sky"]).labels
    model = _load(checkpoint, tmp_path)
    assert np.array_equal(model.segment(image, ["road", "sky"]).labels, labels)
    assert model.text.prompts_encoded == 0  # background prompts included


def test_activation_and_templates_are_part_of_the_key(checkpoint, tmp_path):
    _load(checkpoint, tmp_path).encode_text(["road"])
    quick = _load(checkpoint, tmp_path, quick_gelu=True)
    quick.encode_text(["road"])
    assert quick.text.prompts_encoded == len(quick.text.templates)  # another activation: recomputed

    model = _load(checkpoint, tmp_path)
    few = TextEncoder(model.clip, model.text.tokenizer, model.device, templates=("a photo of a {}.",),
                      cache_dir=tmp_path, signature={"model": "maskclip-tiny-vit", "weights": model.weights_id,
                                                     "activation": "gelu", "maskclip": maskclip.__version__})
    few.name_embeddings(["road"])
    assert few.prompts_encoded == 1  # another template set: recomputed


def test_other_weights_do_not_share(checkpoint, tmp_path):
    _load(checkpoint, tmp_path).encode_text(["road"])
    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    maskclip.load("maskclip-tiny-vit", pretrained=None, device="cpu").save_checkpoint(other)
    model = _load(other, tmp_path)
    model.encode_text(["road"])
    assert model.text.prompts_encoded == len(model.text.templates)


def test_random_weights_store_nothing(tmp_path):
    model = maskclip.load("maskclip-tiny-vit", pretrained=None, device="cpu", cache_dir=tmp_path)
    model.encode_text(["road"])
    assert not (tmp_path / TEXT_CACHE_SUBFOLDER).exists()


def test_without_cache_dir_nothing_is_written(checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _load(checkpoint, None).encode_text(["road"])
    assert not any(tmp_path.iterdir())
