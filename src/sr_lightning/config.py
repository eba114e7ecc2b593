"""Hydra/OmegaConf plumbing shared by the entry points and the tests."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from sr_lightning.paths import REPO_ROOT, shared_dir

#: The `conf/` folder of the checkout (the package is installed editable: `pip install -e .`).
CONF_DIR: Path = REPO_ROOT / "conf"


def register_resolvers() -> None:
    """Register `${sr_shared:}` (the shared data folder, see `sr_lightning.paths.shared_dir`)."""
    if not OmegaConf.has_resolver("sr_shared"):
        OmegaConf.register_new_resolver("sr_shared", lambda: str(shared_dir()))


def conf_dir() -> str:
    """Absolute path of `conf/`, with a clear error when the package is not an editable checkout."""
    if not (CONF_DIR / "train.yaml").is_file():
        raise FileNotFoundError(
            f"Hydra configs not found at {CONF_DIR}. Install sr-lightning from a checkout with `pip install -e .`."
        )
    return str(CONF_DIR)
