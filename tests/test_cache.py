"""Feature cache: bounded memory, disk entries reused only under the same signature."""
import numpy as np
import torch

import maskclip
from maskclip.cache import FeatureCache


def test_memory_cache_is_bounded_lru():
    cache = FeatureCache({"m": 1}, max_bytes=3 * 400)
    for i in range(5):
        cache.put(f"k{i}", {"t": torch.zeros(100)})  # 400 bytes each
    assert cache.get("k0") is None and cache.get("k1") is None
    assert cache.get("k4") is not None


def test_disk_cache_reused_across_instances_with_the_same_weights(tmp_path):
    ckpt = tmp_path / "w.pt"
    maskclip.load("maskclip-tiny-vit", pretrained=None, device="cpu").save_checkpoint(ckpt)
    image = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    first = maskclip.load("maskclip-tiny-vit", pretrained=ckpt, device="cpu", cache_dir=tmp_path / "cache")
    a = first.segment(image, ["a", "b"])
    assert first.stats["image_encoder_runs"] == 1
    second = maskclip.load("maskclip-tiny-vit", pretrained=ckpt, device="cpu", cache_dir=tmp_path / "cache")
    b = second.segment(image, ["a", "b"])
    assert second.stats["image_encoder_runs"] == 0  # read from disk
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)


def test_stale_disk_entries_are_never_used(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    cache_dir = tmp_path / "cache"
    old = maskclip.load("maskclip-tiny-vit", pretrained=None, device="cpu", cache_dir=cache_dir)
    old.segment(image, ["a"])
    new = maskclip.load("maskclip-tiny-vit", pretrained=None, device="cpu", cache_dir=cache_dir)
    new.segment(image, ["a"])
    assert new.stats["image_encoder_runs"] == 1  # other weights: recomputed
    # an entry written under another signature but found at this key is detected and ignored
    key = "some-key"
    FeatureCache({"model": "x"}, disk_dir=cache_dir).put(key, {"t": torch.ones(3)})
    other = FeatureCache({"model": "y"}, disk_dir=cache_dir)
    forged = other._path(key)
    forged.write_bytes(FeatureCache({"model": "x"}, disk_dir=cache_dir)._path(key).read_bytes())
    assert other.get(key) is None and other.stale == 1
    forged.write_bytes(b"truncated")
    assert other.get(key) is None
