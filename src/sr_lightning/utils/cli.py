"""What a user meets on the command line before an entry point runs: Hydra callbacks listed in
`conf/hydra/default.yaml` (every entry point) or in a deprecated alias config.

- `RequiredOptions`: a run missing a required option (a ``???`` value of the composed config, e.g. ``weights`` and
  ``input`` of ``upscale``) prints the entry point's usage and example (``hydra.help.header`` of its top-level
  config) naming every missing option, and exits with 2 before anything is created for the run.
- `Deprecated`: an alias config that stays only so that an old command keeps working (``budget=cpu``) says so, and
  what to type instead, when the job starts.
- `config_groups_help`: the ``--help`` list of the config groups an entry point uses (the OmegaConf resolver
  ``${sr_config_groups:}`` of ``hydra.help.template``; Hydra's own ``$APP_CONFIG_GROUPS`` lists every group under
  ``conf/``, the ``_*`` bases included).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = [
    "CONFIG_GROUPS_RESOLVER",
    "USAGE_ERROR",
    "Deprecated",
    "RequiredOptions",
    "config_groups_help",
    "missing_options",
    "program_name",
    "usage_message",
]

log = logging.getLogger(__name__)

#: exit status of a command line error (argparse's)
USAGE_ERROR = 2
#: the name `sr_lightning.config.register_resolvers` registers `config_groups_help` under
CONFIG_GROUPS_RESOLVER = "sr_config_groups"


def _options(loader: Any, group: str) -> list[str]:
    """The options of `group` on Hydra's search path, those of its sub-folders as `<sub>/<name>`, but the `_*` bases."""
    from hydra.core.object_type import ObjectType

    names = [n for n in loader.get_group_options(group, ObjectType.CONFIG) if not n.startswith("_")]
    for sub in loader.get_group_options(group, ObjectType.GROUP):
        names += [f"{sub}/{n}" for n in _options(loader, f"{group}/{sub}")]
    return sorted(names)


def config_groups_help() -> str:
    """``group: option, ...`` lines, one per config group of the running entry point's defaults list (Hydra's own
    ``hydra/*`` groups are `--hydra-help`'s), with the options Hydra would accept (user config folders included)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    loader = GlobalHydra.instance().config_loader()
    groups = sorted(g for g in HydraConfig.get().runtime.choices if g != "hydra" and not g.startswith("hydra/"))
    return "\n".join(f"{group}: {', '.join(_options(loader, group))}" for group in groups)


def missing_options(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys of `node` whose value is the mandatory ``???``, in config order (Hydra's own node excluded)."""
    missing: list[str] = []
    if isinstance(node, DictConfig):
        items = [(str(key), f"{prefix}{key}") for key in node if not (prefix == "" and key == "hydra")]
    elif isinstance(node, ListConfig):
        items = [(i, f"{prefix}{i}") for i in range(len(node))]
    else:
        return missing
    for key, path in items:
        if OmegaConf.is_missing(node, key):
            missing.append(path)
        else:
            child = node._get_node(key)  # not resolved: an interpolation is not a missing value
            if isinstance(child, DictConfig | ListConfig):
                missing += missing_options(child, f"{path}.")
    return missing


def program_name() -> str:
    """How the user started this process: ``python -m sr_lightning.<entry>``, or the console script's name."""
    import __main__

    spec = getattr(__main__, "__spec__", None)
    if spec is not None:
        return f"python -m {spec.name}"
    return sys.argv[0].rsplit("/", 1)[-1]


def usage_message(missing: list[str], usage: str, program: str) -> str:
    """The lines printed for a run without its required options `missing`."""
    plural = "s" if len(missing) > 1 else ""
    return "\n".join(
        [f"{program}: missing required option{plural}: {', '.join(missing)}", usage, f"all options: {program} --help"]
    )


class RequiredOptions(Callback):
    """Hydra callback: stop a run that lacks a required option with a usage message (exit status 2, no traceback).

    Checked when a single run starts (before Hydra creates its directory) and when each job of a multirun starts
    (a sweep may give the value: ``-m weights=a.pth,b.pth``)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.get("mode") == RunMode.MULTIRUN:  # a single run was checked at its start
            self._check(config)

    @staticmethod
    def _check(config: DictConfig) -> None:
        missing = missing_options(config)
        if missing:
            print(usage_message(missing, str(config.hydra.help.header), program_name()), file=sys.stderr)
            sys.exit(USAGE_ERROR)  # SystemExit: Hydra reports exceptions with a traceback, not this


class Deprecated(Callback):
    """Hydra callback of an alias config kept for an old command: `old` still works, `new` is what to type now."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        log.warning("%s is deprecated and will be removed: it now means %s (type that instead)", self.old, self.new)
