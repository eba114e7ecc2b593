"""Hydra/OmegaConf plumbing shared by the entry points and the tests."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from sr_lightning.hardware import auto_accelerator, auto_precision
from sr_lightning.paths import REPO_ROOT, shared_dir

#: The `conf/` folder of the checkout (the package is installed editable: `pip install -e .`).
CONF_DIR: Path = REPO_ROOT / "conf"


def register_resolvers() -> None:
    """Register `${sr_shared:}` (the shared data folder, see `sr_lightning.paths.shared_dir`) and the
    `hardware=auto` resolvers `${sr_accelerator:}` / `${sr_precision:<accelerator>}` (see `sr_lightning.hardware`)."""
    resolvers = {
        "sr_shared": lambda: str(shared_dir()),
        "sr_accelerator": auto_accelerator,
        "sr_precision": auto_precision,
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def conf_dir() -> str:
    """Absolute path of `conf/`, with a clear error when the package is not an editable checkout."""
    if not (CONF_DIR / "train.yaml").is_file():
        raise FileNotFoundError(
            f"Hydra configs not found at {CONF_DIR}. Install sr-lightning from a checkout with `pip install -e .`."
        )
    return str(CONF_DIR)
