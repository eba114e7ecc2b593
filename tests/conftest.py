"""Shared fixtures. Tests needing ../shared use `shared` (or `require_shared(sub)`): they skip when the
folder is absent, except under SR_REQUIRE_SHARED=1 (CI), where they fail."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sr_lightning.paths import shared_dir


def shared_required() -> bool:
    """True when ``SR_REQUIRE_SHARED`` is set to a truthy value (CI): missing shared data is an error."""
    return os.environ.get("SR_REQUIRE_SHARED", "").strip().lower() in {"1", "true", "yes", "on"}


def require_shared(sub: str = "") -> Path:
    """Return ``shared_dir()/sub``; skip (or fail under SR_REQUIRE_SHARED=1) when it does not exist."""
    path = shared_dir() / sub
    if not path.exists():
        msg = f"shared data not found: {path} (set SR_SHARED_DIR)"
        if shared_required():
            pytest.fail(msg + " and SR_REQUIRE_SHARED=1 forbids skipping")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    return require_shared()


@pytest.fixture(scope="session")
def benchmark_dir() -> Path:
    return require_shared("data/benchmark")


@pytest.fixture(scope="session")
def official_weights_dir() -> Path:
    return require_shared("weights/official")


@pytest.fixture(scope="session")
def train_dir() -> Path:
    return require_shared("data/train")


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Decoded-image and scan caches of the whole session (subprocesses inherit it) go to a temporary folder,
    not to the user's ~/.cache/sr_lightning."""
    path = tmp_path_factory.mktemp("sr_cache")
    previous = os.environ.get("SR_CACHE_DIR")
    os.environ["SR_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("SR_CACHE_DIR", None)
    else:
        os.environ["SR_CACHE_DIR"] = previous
