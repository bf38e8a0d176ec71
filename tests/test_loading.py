"""Weights: random, checkpoint files (state dict and TorchScript archive), clear errors when unavailable."""
import warnings

import pytest
import torch

import maskclip
from maskclip.errors import MaskCLIPError, WeightsUnavailableError


def _same_weights(a, b):
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(a.encode_dense(x).features, b.encode_dense(x).features)
    torch.testing.assert_close(a.encode_text(["cat"]), b.encode_text(["cat"]))


@pytest.mark.parametrize("name", ["maskclip-tiny-vit", "maskclip-tiny-rn"])
def test_state_dict_checkpoint_round_trip(tmp_path, name):
    model = maskclip.load(name, pretrained=None, device="cpu")
    path = tmp_path / "weights.pt"
    model.save_checkpoint(path)
    loaded = maskclip.load(name, pretrained=path, device="cpu")
    _same_weights(model, loaded)
    assert loaded.weights_id.startswith("file:") and str(path) in loaded.weights_id


def test_torchscript_archive_like_openai_releases(tmp_path):
    model = maskclip.load("maskclip-tiny-vit", pretrained=None, device="cpu")
    path = tmp_path / "openai-style.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(model.clip).save(str(path))
        loaded = maskclip.load("maskclip-tiny-vit", pretrained=str(path), device="cpu")
    _same_weights(model, loaded)


def test_random_weights_never_share_a_cache_signature():
    a = maskclip.load("maskclip-tiny-vit", pretrained=None, device="cpu")
    b = maskclip.load("maskclip-tiny-vit", pretrained=None, device="cpu")
    assert a.signature != b.signature


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="not found"):
        maskclip.load("maskclip-tiny-vit", pretrained=tmp_path / "nope.pt")


def test_checkpoint_for_another_architecture(tmp_path):
    path = tmp_path / "rn.pt"
    maskclip.load("maskclip-tiny-rn", pretrained=None, device="cpu").save_checkpoint(path)
    with pytest.raises(WeightsUnavailableError, match="could not load checkpoint"):
        maskclip.load("maskclip-tiny-vit", pretrained=path)


def test_garbage_checkpoint_file(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="could not load checkpoint"):
        maskclip.load("maskclip-tiny-vit", pretrained=path)


def test_unknown_tag_lists_known_tags():
    with pytest.raises(WeightsUnavailableError, match="known tags: .*openai"):
        maskclip.load("ViT-B-16", pretrained="no-such-tag")


def test_download_failure_gives_instructions(monkeypatch):
    """Offline (as on these machines) the download fails; the error says how to provide weights."""
    import open_clip

    def offline(*args, **kwargs):
        raise RuntimeError("Failed to download weights: Name or service not known")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(WeightsUnavailableError, match="--pretrained /path/to/ViT-B-16.pt"):
        maskclip.load("ViT-B-16", pretrained="openai")


def test_device_choice():
    assert maskclip.load("maskclip-tiny-vit", pretrained=None, device="auto").device.type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(MaskCLIPError, match="no CUDA"):
            maskclip.load("maskclip-tiny-vit", pretrained=None, device="cuda")
