"""Feature cache: dense features are the expensive part, so they are computed once per image and settings.

Entries live in a bounded in-memory LRU and, optionally, in a folder on disk. Every disk entry stores the
signature it was computed under (model, weights, dense mode, feature format, package version); an entry
whose signature differs from the current one is ignored and recomputed, so a stale cache is never used.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path

import torch

from .atomic import serialiser_write_error
from .errors import MaskCLIPError

Tensors = dict[str, torch.Tensor]


def _nbytes(tensors: Tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


TEMP_AGE_S = 3600.0  # a cache temporary file this old is a killed write's (another process may be writing one)


def _remove_stale_temporaries(folder: Path) -> None:
    """Delete what killed cache writes left behind (tempfile's tmp*.tmp names; entries are <sha1>.pt)."""
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("tmp") and entry.name.endswith(".tmp"):
            try:
                if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > TEMP_AGE_S:
                    os.unlink(entry.path)
            except OSError:
                pass


class FeatureCache:
    def __init__(self, signature: dict, max_bytes: int = 512 << 20, disk_dir: str | Path | None = None):
        self.signature = dict(signature)
        self.max_bytes = int(max_bytes)
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        self.hits = self.misses = self.stale = 0
        self._memory: OrderedDict[str, Tensors] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._sig_text = json.dumps(self.signature, sort_keys=True)
        if self.disk_dir is not None:
            try:
                self.disk_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MaskCLIPError(f"cannot create the feature cache folder {self.disk_dir}: {exc}") from None
            _remove_stale_temporaries(self.disk_dir)

    def _path(self, key: str) -> Path:
        digest = hashlib.sha1((self._sig_text + "\n" + key).encode()).hexdigest()
        return self.disk_dir / f"{digest}.pt"

    def get(self, key: str) -> Tensors | None:
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                self.hits += 1
                return self._memory[key]
        entry = self._load(key) if self.disk_dir is not None else None
        with self._lock:
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self._remember(key, entry)
            return entry

    def in_memory(self, key: str) -> bool:
        with self._lock:
            return key in self._memory

    def put(self, key: str, tensors: Tensors) -> None:
        tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
        with self._lock:
            self._remember(key, tensors)
        if self.disk_dir is not None:
            self._save(key, tensors)

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()
            self._bytes = 0

    def _remember(self, key: str, tensors: Tensors) -> None:
        if key in self._memory:
            self._bytes -= _nbytes(self._memory.pop(key))
        self._memory[key] = tensors
        self._bytes += _nbytes(tensors)
        while self._bytes > self.max_bytes and len(self._memory) > 1:
            _, old = self._memory.popitem(last=False)
            self._bytes -= _nbytes(old)

    def _load(self, key: str) -> Tensors | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a truncated or foreign file is just a miss; it gets rewritten
            self.stale += 1
            return None
        if entry.get("signature") != self._sig_text or entry.get("key") != key:
            self.stale += 1
            return None
        return entry["tensors"]

    def _save(self, key: str, tensors: Tensors) -> None:
        """Atomic write; a full disk or read-only folder only costs the disk copy, never the result."""
        path = self._path(key)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.disk_dir, suffix=".tmp")
        except OSError as exc:
            warnings.warn(f"feature cache entry not written to {self.disk_dir}: {exc}", stacklevel=3)
            return
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save({"signature": self._sig_text, "key": key, "tensors": tensors}, f)
            os.replace(tmp, path)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            error = serialiser_write_error(path, exc) if isinstance(exc, (OSError, RuntimeError)) else None
            if error is None:
                raise
            warnings.warn(f"feature cache entry not written ({error}); going on without it", stacklevel=3)
