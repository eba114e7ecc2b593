"""Hydra/OmegaConf plumbing shared by the entry points and the tests."""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from sr_lightning.hardware import auto_accelerator, auto_precision
from sr_lightning.paths import shared_dir
from sr_lightning.utils.cli import CONFIG_GROUPS_RESOLVER, config_groups_help

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
    """Register `${sr_shared:}` (the shared data folder, see `sr_lightning.paths.shared_dir`), the `hardware=auto`
    resolvers `${sr_accelerator:}` / `${sr_precision:<accelerator>}` (see `sr_lightning.hardware`), the help's config
    groups and `${sr_floordiv:a,b}`; idempotent."""
    resolvers = {
        "sr_shared": lambda: str(shared_dir()),
        "sr_accelerator": auto_accelerator,
        "sr_precision": auto_precision,
        CONFIG_GROUPS_RESOLVER: config_groups_help,  # the entry point's own groups in `--help` (utils/cli.py)
        "sr_floordiv": lambda a, b: int(a) // int(b),  # an LR patch from an HR one: ${sr_floordiv:192,${scale}}
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


def entry_point(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """``hydra.main`` for the packaged config ``config_name``, registering the resolvers (idempotently) when the entry
    point runs, where Hydra composes the config, rather than when its module is imported."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        run = hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)(task)

        @functools.wraps(task)
        def main() -> Any:
            register_resolvers()
            return run()

        return main

    return decorate


def model_override(cfg: DictConfig) -> dict[str, Any] | None:
    """The ``model=`` config of an entry point that loads weights, without its ``scale`` (the file's, or
    ``scale=``'s, decides), as a plain dict; None when no model config was chosen."""
    if not cfg.get("model"):
        return None
    model = OmegaConf.to_container(cfg.model, resolve=False)
    model.pop("scale", None)  # type: ignore[union-attr]
    return model  # type: ignore[return-value]
