"""Build the Lightning objects of a composed config: the trainer (with what DDP under Hydra needs, only when it is
DDP) and the datamodule / module / trainer triple of the train and test entry points."""

from __future__ import annotations

from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from sr_lightning.lightning.hydra_ddp import launch_ranks_as_this_job
from sr_lightning.utils.console import quiet_console
from sr_lightning.utils.instantiate import instantiate_dict


def instantiate_trainer(cfg: DictConfig, **kwargs: Any) -> L.Trainer:
    """The Lightning trainer of `cfg` (the `trainer` node). A trainer that starts DDP ranks as subprocesses under
    Hydra gets them started as this Hydra job (`launch_ranks_as_this_job`), so multiruns with `trainer.devices=N`
    work; the console keeps to what a user needs (`sr_lightning.utils.console.quiet_console`)."""
    quiet_console()  # before the Trainer is made: its notices are printed by its constructor
    trainer = instantiate(cfg, **kwargs)
    launch_ranks_as_this_job(trainer)
    return trainer


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """Datamodule, module and trainer of a composed train/test config."""
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.module)
    callbacks = instantiate_dict(cfg.get("callbacks"))
    loggers = instantiate_dict(cfg.get("logger"))
    trainer = instantiate_trainer(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, module, trainer
