"""Issue 17 item 4: weights for an open_clip tag come through huggingface_hub's own handling (its cache first
with `local_files_only`, then `hf_hub_download` with HF_ENDPOINT / proxies / HF_HUB_OFFLINE honoured); no raw
socket, nothing process-wide flipped, and the clear error stays. Hermetic: the hub is monkeypatched."""
from __future__ import annotations

import time

import open_clip
import pytest

import maskclip
from maskclip import weights
from maskclip.errors import WeightsUnavailableError

TAG = "hubtest"


@pytest.fixture()
def fake_tag(monkeypatch, tmp_path):
    """maskclip-tiny-vit gets a weights tag served from a fake hub repo; returns (checkpoint, calls)."""
    model = open_clip.create_model("maskclip-tiny-vit", pretrained=None)
    checkpoint = tmp_path / "open_clip_model.safetensors"
    import torch

    torch.save(model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    real_cfg = open_clip.get_pretrained_cfg
    real_tags = open_clip.list_pretrained_tags_by_model
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda m, t: {"hf_hub": "someone/tiny/", "mean": (0.5,) * 3,
                        "std": (0.25,) * 3} if t == TAG else real_cfg(m, t))
    monkeypatch.setattr(open_clip, "list_pretrained_tags_by_model",
                        lambda m: [TAG] if m == "maskclip-tiny-vit" else real_tags(m))
    calls = []

    def download(repo, filename, local_files_only=False, **kw):
        calls.append((repo, filename, local_files_only))
        from huggingface_hub.errors import LocalEntryNotFoundError

        path = tmp_path / filename
        if local_files_only and not path.exists():
            raise LocalEntryNotFoundError("not cached")
        if not path.exists():
            raise FileNotFoundError(filename)
        return str(path)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return checkpoint, calls


def test_cached_weights_load_without_any_request(fake_tag, monkeypatch):
    _, calls = fake_tag
    monkeypatch.setattr(weights, "_hub_reachable", lambda repo: pytest.fail("no request for cached weights"))
    import huggingface_hub.constants as hf_constants

    before = hf_constants.HF_HUB_OFFLINE
    model = maskclip.load("maskclip-tiny-vit", pretrained=TAG, device="cpu")
    assert model.weights_id == f"tag:{TAG}"
    assert hf_constants.HF_HUB_OFFLINE == before
    assert all(local for _, _, local in calls)  # cache only: safetensors tried, then the .bin found
    assert [f for _, f, _ in calls] == ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    # the tag's own normalisation, as open_clip applies it for a tag
    assert weights.clip_mean_std(model.clip) == ((0.5,) * 3, (0.25,) * 3)


def test_unreachable_hub_fails_fast_with_instructions(fake_tag, monkeypatch, tmp_path):
    _, calls = fake_tag
    (tmp_path / "open_clip_pytorch_model.bin").unlink()
    probes = []
    monkeypatch.setattr(weights, "_hub_reachable", lambda repo: probes.append(repo) or False)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="--pretrained /path/to/maskclip-tiny-vit.pt"):
        maskclip.load("maskclip-tiny-vit", pretrained=TAG, device="cpu")
    assert time.perf_counter() - start < 5
    assert probes == ["someone/tiny"]
    assert all(local for _, _, local in calls)  # no download attempted (no retries against a dead network)


def test_hf_hub_offline_is_honoured_without_a_probe(fake_tag, monkeypatch, tmp_path):
    (tmp_path / "open_clip_pytorch_model.bin").unlink()
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(weights, "_hub_reachable", lambda repo: pytest.fail("offline: no probe"))
    with pytest.raises(WeightsUnavailableError, match="could not download"):
        maskclip.load("maskclip-tiny-vit", pretrained=TAG, device="cpu")


def test_reachable_hub_downloads_through_hf_hub_download(fake_tag, monkeypatch, tmp_path):
    _, calls = fake_tag
    monkeypatch.setattr(weights, "_hub_reachable", lambda repo: True)
    cached = tmp_path / "open_clip_pytorch_model.bin"
    data = cached.read_bytes()
    cached.unlink()

    import huggingface_hub
    fake = huggingface_hub.hf_hub_download

    def download(repo, filename, local_files_only=False, **kw):
        if not local_files_only and filename.endswith(".bin"):
            cached.write_bytes(data)  # "downloaded"
        return fake(repo, filename, local_files_only=local_files_only, **kw)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    model = maskclip.load("maskclip-tiny-vit", pretrained=TAG, device="cpu")
    assert model.weights_id == f"tag:{TAG}"
    assert ("someone/tiny", "open_clip_pytorch_model.bin", False) in calls


def test_probe_uses_the_hub_session_and_endpoint(monkeypatch):
    """The probe goes through huggingface_hub's session (its proxies) to its endpoint (HF_ENDPOINT)."""
    import huggingface_hub.constants as hf_constants
    import huggingface_hub.utils as hf_utils

    seen = {}

    class Session:
        def head(self, url, timeout):
            seen.update(url=url, timeout=timeout)
            raise OSError("unreachable")

    monkeypatch.setattr(hf_constants, "ENDPOINT", "https://mirror.example")
    monkeypatch.setattr(hf_utils, "get_session", lambda: Session())
    assert weights._hub_reachable("someone/tiny") is False
    assert seen == {"url": "https://mirror.example/api/models/someone/tiny", "timeout": hf_constants.HF_HUB_ETAG_TIMEOUT}


def test_no_raw_socket_or_global_offline_flip():
    import inspect

    source = inspect.getsource(weights)
    assert "socket" not in source and "HF_HUB_OFFLINE =" not in source
