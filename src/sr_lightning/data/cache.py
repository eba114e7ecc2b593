"""Decoded-image cache, so that PNG decoding and LR generation are paid once, not every epoch.

Modes:
- ``"memory"``: decoded uint8 arrays kept in a dict of this process. DataLoader workers each hold their own
  copy (the dataset object is copied into every worker); with persistent workers it survives across epochs.
- ``"disk"``: decoded uint8 arrays saved as ``.npy`` under ``cache_dir`` and opened with ``mmap_mode="r"``,
  so every worker and every later run shares them through the OS page cache. An entry's key hashes the
  source file's resolved path, mtime, size and a tag (e.g. ``"decoded"`` or ``"bicubic_x4"``): a changed or
  replaced source file gets a new key, so stale entries are never reused. Files are written atomically
  (`sr_lightning.utils.atomic`), so concurrent workers and interrupted runs never see half a file.
- ``"none"``: no caching.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sr_lightning.utils.atomic import atomic_open

__all__ = ["CACHE_MODES", "ImageCache", "default_cache_dir"]

CACHE_MODES = ("memory", "disk", "none")


def default_cache_dir() -> Path:
    """``$SR_CACHE_DIR`` if set, else ``~/.cache/sr_lightning/decoded``."""
    env = os.environ.get("SR_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "sr_lightning" / "decoded"


class ImageCache:
    """Cache of decoded uint8 arrays keyed by (source file, its mtime and size, tag)."""

    def __init__(self, mode: str = "memory", cache_dir: str | os.PathLike | None = None) -> None:
        if mode not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, got {mode!r}")
        self.mode = mode
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        if mode == "disk" and self.cache_dir is None:
            self.cache_dir = default_cache_dir()
        self._memory: dict[str, np.ndarray] = {}
        #: Number of times the loader was called (cache misses); used by tests and for diagnostics.
        self.misses = 0

    def __getstate__(self) -> dict:
        # Workers start with an empty memory cache instead of a pickled copy of the parent's arrays.
        state = self.__dict__.copy()
        state["_memory"] = {}
        return state

    @staticmethod
    def key(path: str | os.PathLike, tag: str) -> str:
        """Hex key of ``path`` (resolved) + its mtime (ns) + size + ``tag``."""
        p = Path(path).resolve()
        st = p.stat()
        raw = f"{p}\0{st.st_mtime_ns}\0{st.st_size}\0{tag}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def entry_path(self, path: str | os.PathLike, tag: str) -> Path:
        """Where the disk cache stores (or would store) the array for ``(path, tag)``."""
        if self.cache_dir is None:
            raise ValueError("this cache has no cache_dir")
        name = f"{Path(path).stem[:40]}-{tag}-{self.key(path, tag)}.npy"
        return self.cache_dir / name

    def get(self, path: str | os.PathLike, tag: str, loader: Callable[[], np.ndarray]) -> np.ndarray:
        """Return the cached array for ``(path, tag)``, calling ``loader()`` on a miss.

        With ``"disk"`` the result is a read-only memory map; callers must copy before writing.
        """
        if self.mode == "none":
            self.misses += 1
            return loader()
        if self.mode == "memory":
            k = self.key(path, tag)
            arr = self._memory.get(k)
            if arr is None:
                self.misses += 1
                arr = np.ascontiguousarray(loader())
                arr.setflags(write=False)
                self._memory[k] = arr
            return arr
        target = self.entry_path(path, tag)
        if target.exists():
            try:
                return np.load(target, mmap_mode="r")
            except (ValueError, OSError):  # unreadable entry (e.g. disk full earlier): rebuild it
                target.unlink(missing_ok=True)
        self.misses += 1
        arr = np.ascontiguousarray(loader())
        _atomic_save(target, arr)
        return np.load(target, mmap_mode="r")

    def clear_memory(self) -> None:
        """Drop the arrays held in memory (the disk cache is left alone)."""
        self._memory.clear()


def _atomic_save(target: Path, arr: np.ndarray) -> None:
    # no fsync: an entry lost in a crash is only decoded again
    with atomic_open(target, "wb") as f:
        np.save(f, arr, allow_pickle=False)
