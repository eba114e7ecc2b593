"""Instantiation helpers (lightning-hydra-template habits): everything comes from `_target_` configs."""

from __future__ import annotations

from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sr_lightning.lightning.hydra_ddp import use_job_command


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


def instantiate_trainer(cfg: DictConfig, **kwargs: Any) -> L.Trainer:
    """The Lightning trainer of `cfg` (the `trainer` node); DDP ranks it starts under Hydra run this Hydra job
    (`sr_lightning.lightning.hydra_ddp`), so multiruns with `trainer.devices=N` work."""
    use_job_command()
    return instantiate(cfg, **kwargs)


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """Datamodule, module and trainer of a composed train/test config."""
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.module)
    callbacks = instantiate_dict(cfg.get("callbacks"))
    loggers = instantiate_dict(cfg.get("logger"))
    trainer = instantiate_trainer(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, module, trainer


def loggable_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as a plain dict for `logger.log_hyperparams` (hydra runtime keys dropped)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
