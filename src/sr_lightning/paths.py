"""Where the project finds data it does not ship: the shared folder of benchmark sets and weights.

Nothing here assumes a source checkout: an installed wheel resolves every path from environment variables or the
working directory. Only the default of the shared folder keeps the checkout convention (``../shared`` beside the
repository) when the package runs from one, so a clone with ``shared/`` beside it works from any directory.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Root of the source tree this module was imported from (src/sr_lightning/paths.py -> root). It is a repository
#: root only in a checkout (see `checkout_root`); the tests, which run in one, use it for the repository's files.
REPO_ROOT = Path(__file__).resolve().parents[2]


def checkout_root() -> Path | None:
    """The repository root when the package is imported from a source checkout (an editable install: ``src/`` layout
    beside ``pyproject.toml``), else None (an installed wheel, where `REPO_ROOT` is an unrelated folder)."""
    package_dir = Path(__file__).resolve().parent
    root = package_dir.parents[1]
    if package_dir.parent.name == "src" and (root / "pyproject.toml").is_file():
        return root
    return None


def shared_dir() -> Path:
    """The shared data folder: ``$SR_SHARED_DIR`` if set; else ``../shared`` beside the repository in a checkout;
    else ``../shared`` relative to the working directory (the same layout: launch from a folder beside it)."""
    env = os.environ.get("SR_SHARED_DIR")
    if env:
        return Path(env).expanduser().resolve()
    root = checkout_root()
    base = root if root is not None else Path.cwd()
    return (base.parent / "shared").resolve()
