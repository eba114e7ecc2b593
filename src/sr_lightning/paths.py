"""Where the project finds data it does not ship: the shared folder of benchmark sets and weights."""

from __future__ import annotations

import os
from pathlib import Path

#: Repository root when running from a source checkout (src/sr_lightning/paths.py -> repo).
REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """The shared data folder: ``$SR_SHARED_DIR`` if set, else ``../shared`` beside the repository."""
    env = os.environ.get("SR_SHARED_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared").resolve()


def shared_required() -> bool:
    """True when ``SR_REQUIRE_SHARED`` is set to a truthy value (CI): missing shared data is an error."""
    return os.environ.get("SR_REQUIRE_SHARED", "").strip().lower() in {"1", "true", "yes", "on"}
