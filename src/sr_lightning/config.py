"""Hydra/OmegaConf plumbing shared by the entry points and the tests."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf, open_dict

from sr_lightning.hardware import auto_accelerator, auto_precision
from sr_lightning.paths import shared_dir

if TYPE_CHECKING:  # importlib.resources.abc is Python >= 3.11; annotations only
    from importlib.resources.abc import Traversable

#: The package holding the Hydra configs: the repository's top-level `conf/` folder, shipped in the wheel as
#: `sr_lightning.conf` (pyproject.toml maps the package to that folder), so an editable install and a wheel read
#: the same files through importlib resources.
CONF_PACKAGE = "sr_lightning.conf"

#: `config_path` of the entry points. Users add their own config folders with `--config-dir DIR` or
#: `hydra.searchpath=[file://DIR]` (README "Your own configs").
CONFIG_PATH = f"pkg://{CONF_PACKAGE}"


def conf_files() -> Traversable:
    """The root of the packaged configs (a folder in an editable install, package data in a wheel)."""
    return files(CONF_PACKAGE)


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


def compose_config(config_name: str, overrides: list[str], output_dir: str | Path | None = None) -> DictConfig:
    """Compose the packaged `config_name` with `overrides` outside an entry point (tests, benchmarks). With
    `output_dir`, as `@hydra.main` hands it to the entry point: Hydra's runtime node set (`HydraConfig.get()`,
    `${hydra:runtime.output_dir}`) and the `hydra` key removed."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONF_PACKAGE, version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=output_dir is not None)
    if output_dir is None:
        return cfg
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as the entry points see it
    return cfg
