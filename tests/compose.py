"""Compose the packaged configs (pkg://sr_lightning.conf) the way the entry points do (used by several tests)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from sr_lightning.config import CONF_PACKAGE, compose_config, conf_files, register_resolvers

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def compose_cfg(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose `config_name` with `overrides`, with hydra's runtime node set (as in a real run)."""
    return compose_config(config_name, overrides, output_dir)


def compose_with_hydra(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose `config_name` with `overrides`, keeping Hydra's own node (`hydra.callbacks`, `hydra.help`, ...)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONF_PACKAGE, version_base="1.3"):
        return compose(config_name, overrides=overrides, return_hydra_config=True)


def _yaml_files(folder: Traversable, prefix: str = "") -> list[str]:
    """`<sub>/<name>.yaml` of every YAML file under `folder` (importlib resources have no rglob)."""
    names = []
    for entry in folder.iterdir():
        if entry.is_dir():
            names += _yaml_files(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(".yaml"):
            names.append(prefix + entry.name)
    return names


def packaged_yaml(group: str = "") -> list[str]:
    """The YAML files of the packaged configs (of one group, or all), relative to it, sorted."""
    root = conf_files()
    return sorted(_yaml_files(root.joinpath(group) if group else root))


def group_options(group: str) -> list[str]:
    """The option names of a config group (its YAML files in the packaged configs; files named `_*` are bases)."""
    names = [name.removesuffix(".yaml") for name in packaged_yaml(group)]
    return [n for n in names if not n.rsplit("/", 1)[-1].startswith("_")]  # `_*`: bases pulled in by defaults lists
