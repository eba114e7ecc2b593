"""Compose the packaged configs (pkg://sr_lightning.conf) the way the entry points do (used by several tests)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from sr_lightning.config import compose_config, conf_files

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def compose_cfg(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose `config_name` with `overrides`, with hydra's runtime node set (as in a real run)."""
    return compose_config(config_name, overrides, output_dir)


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
