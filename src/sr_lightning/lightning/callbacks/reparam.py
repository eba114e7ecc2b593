"""Fold every re-parameterizable block (EDBB, ...) of the trained network, for any network that has them."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from sr_lightning.archs.deploy import to_deploy_form
from sr_lightning.archs.reparam import network_form, reparameterize_model
from sr_lightning.weights import save_weights

log = logging.getLogger(__name__)


class Reparameterize(Callback):
    """Structural re-parameterization during training.

    Args:
        at: when to fold: ``"fit_start"`` (before the optimizer is built: the EFDN reparam stage fine-tunes the
            plain network), ``"never"`` (only export), or a step / epoch number (see ``unit``) after which training
            continues on the folded network with a freshly built optimizer (single-process only).
        unit: ``"step"`` or ``"epoch"`` for an integer ``at``.
        export_path: where to write the deploy-form weights at the end of fitting (None: no export).
    The form ("train" / "deploy") is recorded in every checkpoint by `SRModule`, so resuming or testing a
    checkpoint rebuilds the right architecture.
    """

    def __init__(self, at: str | int = "fit_start", unit: str = "step", export_path: str | None = None) -> None:
        if isinstance(at, str) and at not in ("fit_start", "never"):
            raise ValueError(f"at must be 'fit_start', 'never' or a step/epoch number, got {at!r}")
        if unit not in ("step", "epoch"):
            raise ValueError(f"unit must be 'step' or 'epoch', got {unit!r}")
        self.at = at
        self.unit = unit
        self.export_path = export_path

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self.at == "fit_start":
            self._fold(pl_module)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, idx: int) -> None:
        if self.unit == "step" and isinstance(self.at, int) and trainer.global_step == self.at:
            self._fold_mid_training(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.unit == "epoch" and isinstance(self.at, int) and trainer.current_epoch == self.at:
            self._fold_mid_training(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.export_path and trainer.is_global_zero:
            deploy = copy.deepcopy(pl_module.net)
            to_deploy_form(deploy)
            save_weights(deploy, Path(self.export_path), {"form": "deploy", "network": type(deploy).__name__})
            log.info("exported deploy-form weights to %s", self.export_path)

    @staticmethod
    def _fold(pl_module: L.LightningModule) -> int:
        if network_form(pl_module.net) == "deploy":
            return 0
        n = reparameterize_model(pl_module.net)
        pl_module.net.to(pl_module.device)
        log.info("re-parameterized %d blocks of %s", n, type(pl_module.net).__name__)
        return n

    def _fold_mid_training(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if network_form(pl_module.net) == "deploy":
            return
        if trainer.world_size > 1:
            raise RuntimeError("folding in the middle of a multi-process run is not supported: use at=fit_start")
        self._fold(pl_module)
        trainer.strategy.setup_optimizers(trainer)  # the old optimizer holds the branch parameters
