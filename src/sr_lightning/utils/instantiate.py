"""Instantiation helpers (lightning-hydra-template habits): everything comes from `_target_` configs."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


def instantiate_dict(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` node of a dict-of-configs group (`callbacks`, `logger`); None -> [].

    A node may carry `enabled: false` (an optional callback that is off by default, e.g. `callbacks.ema`);
    `enabled` itself is not passed to the constructor.
    """
    if not cfg:
        return []
    objs = []
    for node in cfg.values():
        if not (isinstance(node, DictConfig) and "_target_" in node) or not node.get("enabled", True):
            continue
        if "enabled" in node:  # resolve against the whole config, then drop the switch
            node = OmegaConf.create(
                {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "enabled"}
            )
        objs.append(instantiate(node))
    return objs


def loggable_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as a plain dict for `logger.log_hyperparams` (hydra runtime keys dropped)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
