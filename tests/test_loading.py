"""Weights: random, checkpoint files (state dict and TorchScript archive), clear errors when unavailable."""
import warnings

import pytest
import torch

from open_clip.transformer import QuickGELU

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


def _activations(model):
    """The MLP activation class of every transformer block of both towers (ResNet image towers have none)."""
    blocks = list(model.clip.transformer.resblocks)
    if hasattr(model.clip.visual, "transformer"):
        blocks += list(model.clip.visual.transformer.resblocks)
    return {type(block.mlp.gelu) for block in blocks}


def _openai_like(name="maskclip-tiny-vit"):
    """A random-weight model built as OpenAI's are (QuickGELU)."""
    torch.manual_seed(0)
    model = maskclip.load(name, pretrained=None, device="cpu", quick_gelu=True)
    assert _activations(model) == {QuickGELU}
    return model


def _script(model, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(model.clip).save(str(path))


@pytest.mark.parametrize("name", ["maskclip-tiny-vit", "maskclip-tiny-rn"])
def test_torchscript_archive_like_openai_releases_loads_with_quick_gelu(tmp_path, name):
    model = _openai_like(name)
    path = tmp_path / "openai-style.pt"
    _script(model, path)
    loaded = maskclip.load(name, pretrained=str(path), device="cpu")
    assert _activations(loaded) == {QuickGELU} and loaded.quick_gelu
    _same_weights(model, loaded)
    assert loaded.signature["activation"] == "quick_gelu"


def test_quick_gelu_override_and_its_cache_signature(tmp_path):
    model = _openai_like()
    path = tmp_path / "openai-style.pt"
    _script(model, path)
    gelu = maskclip.load("maskclip-tiny-vit", pretrained=str(path), device="cpu", quick_gelu=False)
    assert _activations(gelu) == {torch.nn.GELU} and not gelu.quick_gelu
    x = torch.randn(1, 3, 224, 224)
    assert not torch.allclose(gelu.encode_dense(x).features, model.encode_dense(x).features)
    quick = maskclip.load("maskclip-tiny-vit", pretrained=str(path), device="cpu")
    assert gelu.signature != quick.signature  # same file, other activation: features never shared


def test_state_dict_from_an_openai_archive_loads_with_quick_gelu(tmp_path):
    """A state dict saved from OpenAI's TorchScript model keeps the archive's constants, which mark it."""
    model = _openai_like()
    state = dict(model.clip.state_dict(), input_resolution=torch.tensor(224), context_length=torch.tensor(77),
                 vocab_size=torch.tensor(49408))
    torch.save(state, tmp_path / "openai-state.pt")
    loaded = maskclip.load("maskclip-tiny-vit", pretrained=tmp_path / "openai-state.pt", device="cpu")
    assert _activations(loaded) == {QuickGELU}
    _same_weights(model, loaded)
    torch.save(model.clip.state_dict(), tmp_path / "plain.pt")  # no mark: open_clip's default (GELU)
    plain = maskclip.load("maskclip-tiny-vit", pretrained=tmp_path / "plain.pt", device="cpu")
    assert _activations(plain) == {torch.nn.GELU}
    hub = tmp_path / "models--timm--vit_base_patch16_clip_224.openai" / "snapshots" / "abc"
    hub.mkdir(parents=True)  # a file of a Hugging Face repository of OpenAI weights
    torch.save(model.clip.state_dict(), hub / "open_clip_pytorch_model.bin")
    assert _activations(maskclip.load("maskclip-tiny-vit", pretrained=hub / "open_clip_pytorch_model.bin")) == \
        {QuickGELU}
    model.save_checkpoint(tmp_path / "ours.pt")  # our checkpoints record the activation
    assert _activations(maskclip.load("maskclip-tiny-vit", pretrained=tmp_path / "ours.pt")) == {QuickGELU}


def test_openai_tag_builds_quick_gelu(monkeypatch):
    """The 'openai' tag's open_clip config says QuickGELU; the download is simulated (no network here)."""
    import open_clip

    create = open_clip.create_model
    requested = {}

    def without_download(name, pretrained=None, **kwargs):
        requested.update(kwargs, pretrained=pretrained)
        return create(name, pretrained=None, **kwargs)

    from maskclip import weights

    monkeypatch.setattr(open_clip, "create_model", without_download)
    monkeypatch.setattr(weights, "_tag_checkpoint", lambda name, tag: f"/hub-cache/{name}-{tag}.bin")
    model = maskclip.load("ViT-B-32", pretrained="openai", device="cpu")
    assert requested["pretrained"] == "/hub-cache/ViT-B-32-openai.bin" and requested["quick_gelu"] is True
    assert _activations(model) == {QuickGELU}
    assert model.weights_id == "tag:openai" and model.signature["activation"] == "quick_gelu"


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

    from maskclip import weights

    monkeypatch.setattr(open_clip, "create_model", offline)
    monkeypatch.setattr(weights, "_hub_reachable", lambda repo: False)  # hermetic: never download here
    with pytest.raises(WeightsUnavailableError, match="--pretrained /path/to/ViT-B-16.pt"):
        maskclip.load("ViT-B-16", pretrained="openai")


def test_device_choice():
    assert maskclip.load("maskclip-tiny-vit", pretrained=None, device="auto").device.type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(MaskCLIPError, match="no CUDA"):
            maskclip.load("maskclip-tiny-vit", pretrained=None, device="cuda")
