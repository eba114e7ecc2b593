"""Fold every re-parameterizable block (EDBB, ...) of the trained network, for any network that has them."""

from __future__ import annotations

import logging
from collections import defaultdict

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from sr_lightning.archs.forms import network_form, reparameterize_model

log = logging.getLogger(__name__)


class Reparameterize(Callback):
    """Structural re-parameterization during training.

    Args:
        at: when to fold: ``"fit_start"`` (before the optimizer is built: the EFDN reparam stage fine-tunes the
            plain network), ``"never"``, or a step / epoch number (see ``unit``) after which training continues on the
            folded network.
        unit: ``"step"`` or ``"epoch"`` for an integer ``at``.

    A mid-training fold keeps the optimizer and LR scheduler objects: the optimizer's parameter groups are re-pointed
    at the folded parameters (moments kept for the parameters the fold leaves alone, dropped for the folded ones), so
    the schedule continues where it was. Under DDP the module is wrapped again (every rank folds identically).
    After folding, every callback with an ``on_reparameterize(trainer, pl_module)`` method is told (e.g. `EMA` folds
    its averaged copy). The form ("train" / "deploy") is recorded in every checkpoint by `SRModule`; the run's
    ``weights/deploy.pth`` is written by the train entry point from the best weights.
    """

    def __init__(self, at: str | int = "fit_start", unit: str = "step") -> None:
        if isinstance(at, str) and at not in ("fit_start", "never"):
            raise ValueError(f"at must be 'fit_start', 'never' or a step/epoch number, got {at!r}")
        if unit not in ("step", "epoch"):
            raise ValueError(f"unit must be 'step' or 'epoch', got {unit!r}")
        self.at = at
        self.unit = unit

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self.at == "fit_start" and self._fold(pl_module):
            _notify(trainer, pl_module)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, idx: int) -> None:
        if self.unit == "step" and isinstance(self.at, int) and trainer.global_step >= self.at:
            self._fold_mid_training(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.unit == "epoch" and isinstance(self.at, int) and trainer.current_epoch >= self.at:
            self._fold_mid_training(trainer, pl_module)

    @staticmethod
    def _fold(pl_module: L.LightningModule) -> int:
        if network_form(pl_module.net) == "deploy":
            return 0
        n = reparameterize_model(pl_module.net)
        pl_module.net.to(pl_module.device)
        log.info("re-parameterized %d blocks of %s", n, type(pl_module.net).__name__)
        return n

    def _fold_mid_training(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._fold(pl_module):
            return  # already folded (also after resuming from a checkpoint written after the fold)
        repoint_optimizers(trainer, pl_module)
        strategy = trainer.strategy
        if trainer.world_size > 1 and hasattr(strategy, "configure_ddp"):
            strategy.model = pl_module  # the DDP wrapper holds the old parameters: wrap the folded module again
            strategy.configure_ddp()
        _notify(trainer, pl_module)


def repoint_optimizers(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    """Point the existing optimizers at the module's current parameters, in the groups `configure_optimizers` gives.

    The optimizer objects stay (so LR schedulers keep their state and the current LR); per-parameter state (Adam
    moments) is kept for parameters that still exist and dropped for the ones a fold replaced.
    """
    fresh = pl_module.configure_optimizers()
    fresh_opts = _optimizers_of(fresh)
    if len(fresh_opts) != len(trainer.optimizers):
        raise RuntimeError("configure_optimizers gave a different number of optimizers after the fold")
    for old, new in zip(trainer.optimizers, fresh_opts):
        if len(old.param_groups) != len(new.param_groups):
            raise RuntimeError("configure_optimizers gave a different number of parameter groups after the fold")
        for old_group, new_group in zip(old.param_groups, new.param_groups):
            old_group["params"] = list(new_group["params"])
        alive = {p for g in old.param_groups for p in g["params"]}
        old.state = defaultdict(dict, {p: s for p, s in old.state.items() if p in alive})


def _optimizers_of(config: object) -> list[torch.optim.Optimizer]:
    """The optimizers of a `configure_optimizers` return value (optimizer, dict, or list of either)."""
    if isinstance(config, torch.optim.Optimizer):
        return [config]
    if isinstance(config, dict):
        return [config["optimizer"]]
    if isinstance(config, (list, tuple)):
        items = config[0] if len(config) == 2 and isinstance(config[0], (list, tuple)) else config
        return [opt for item in items for opt in _optimizers_of(item)]
    raise TypeError(f"unsupported configure_optimizers return value: {type(config).__name__}")


def _notify(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    for cb in trainer.callbacks:
        hook = getattr(cb, "on_reparameterize", None)
        if callable(hook):
            hook(trainer, pl_module)
