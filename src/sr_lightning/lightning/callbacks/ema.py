"""Exponential moving average (EMA) of the network's weights, on Lightning's `WeightAveraging` callback.

The average is a `torch.optim.swa_utils.AveragedModel` of the LightningModule, updated after every optimizer step
with ``torch.optim.swa_utils.get_ema_multi_avg_fn``. Lightning's `WeightAveraging` then evaluates the average in the
validation loop, saves it as the checkpoint's ``state_dict`` (the raw weights go to ``current_model_state``, the
update count to ``averaging_state``) and copies it into the module when training ends, so the best checkpoint, the
test loop on it and the exported weights are the EMA weights. This subclass adds the warm-up of the decay,
structural folds (EDBB -> conv) of the averaged copy, and an optional validation of the raw weights.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from sr_lightning.archs.forms import is_reparameterizable, reparameterize_model
from sr_lightning.metrics import PSNRY, SSIMY

log = logging.getLogger(__name__)

#: exponent of the warm-up: the decay of update n is at most 1 - (1 + n) ** -WARMUP_POWER
WARMUP_POWER = 0.75


def ema_decay(n: int, decay: float, warmup: bool = True) -> float:
    """Decay of the update that follows ``n`` averaged models: ``min(decay, 1 - (1 + n) ** -0.75)`` with warm-up.

    With warm-up the first update (n = 0) copies the weights (decay 0), n = 1 gives 0.41, n = 10: 0.83,
    n = 100: 0.969, n = 1000: 0.9944; 0.999 is reached after 9999 updates. Without it the first update copies
    (as ``AveragedModel`` always does) and every later one uses ``decay``.
    """
    return min(decay, 1.0 - (1.0 + n) ** -WARMUP_POWER) if warmup else decay


def ema_multi_avg_fn(decay: float, warmup: bool = True) -> Callable[[list, list, torch.Tensor | int], None]:
    """``AveragedModel`` ``multi_avg_fn``: torch's in-place EMA (``_foreach_lerp_``) at the decay of `ema_decay`."""
    get_ema_multi_avg_fn(decay)  # validates decay in [0, 1]

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor | int) -> None:
        get_ema_multi_avg_fn(ema_decay(int(n_averaged), decay, warmup))(averaged, current, n_averaged)

    return update


def _has_blocks(net: nn.Module) -> bool:
    """True while ``net`` holds re-parameterizable blocks (training form)."""
    return any(is_reparameterizable(m) for m in net.modules())


class EMA(WeightAveraging):
    """EMA of the network's weights; validation, checkpoints' ``state_dict`` and the final weights use the average.

    Args:
        decay: EMA decay (weight of the old average at each optimizer step).
        warmup: cap the decay at ``1 - (1 + n) ** -0.75`` for update n (see `ema_decay`), so a short run is not
            dominated by its first weights.
        validate_raw: after each validation of the average, also score the raw weights on the same validation
            data (fp32, no autocast) and log ``val_raw/psnr`` and ``val_raw/ssim`` (EMA vs no EMA in one run).

    A structural fold of ``pl_module.net`` (the `Reparameterize` callback, or a checkpoint saved after a fold) is
    applied to the averaged copy too (`on_reparameterize`), so its parameters pair with the folded network again.
    """

    def __init__(self, decay: float = 0.999, warmup: bool = True, validate_raw: bool = False) -> None:
        super().__init__(use_buffers=True, multi_avg_fn=ema_multi_avg_fn(decay, warmup))
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.validate_raw = bool(validate_raw)
        self._average_folded = False  # the averaged network is in deploy form: nothing left to fold

    # -- the averaged copy ---------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Outside fit (e.g. `trainer.test(ckpt_path=best)` after fitting) the checkpoint's state_dict, i.e. the
        # average, is what is evaluated: drop the fit's averaged copy so nothing swaps or reloads raw weights.
        self._average_model = None
        super().setup(trainer, pl_module, stage)  # deep-copies the module (already folded if it was folded)
        self._average_folded = self._average_model is not None and not _has_blocks(self._average_model.module.net)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # `setup` runs before the strategy moves the module to its device: keep the average beside the weights.
        if self._average_model is not None:
            self._average_model.to(pl_module.device)
            self.on_reparameterize(trainer, pl_module)

    def on_reparameterize(self, trainer: L.Trainer | None, pl_module: L.LightningModule) -> None:
        """Fold the averaged network after ``pl_module.net`` was folded (called by `Reparameterize`).

        Folding the training-form average gives the deploy-form average; later updates average the folded weights.
        """
        if self._average_model is None or self._average_folded or _has_blocks(pl_module.net):
            return
        net = self._average_model.module.net
        with torch.inference_mode(False):  # the guards below may run inside the validation loop's inference mode
            n = reparameterize_model(net)
        net.to(self._average_model.n_averaged.device)
        self._average_folded = True
        log.info("EMA: folded %d re-parameterizable blocks of the averaged network", n)

    # -- updates, validation swap, end of training: fold first if the module was folded without telling us -------
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        self.on_reparameterize(trainer, pl_module)
        super().on_train_batch_end(trainer, pl_module, *args)  # type: ignore[arg-type]

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.on_reparameterize(trainer, pl_module)
        super().on_validation_epoch_start(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.on_reparameterize(trainer, pl_module)
        super().on_train_end(trainer, pl_module)

    # -- checkpoints -----------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.on_reparameterize(trainer, pl_module)
        super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn != TrainerFn.FITTING or self._average_model is None:
            return  # testing / validating a checkpoint: keep its state_dict (the average) in the module
        # A checkpoint saved after a fold holds deploy-form tensors (checkpoint["sr_form"] == "deploy");
        # SRModule.on_load_checkpoint has folded the module already (Lightning restores the module before the
        # callbacks): the average must follow before its state is loaded.
        self.on_reparameterize(trainer, pl_module)
        super().on_load_checkpoint(trainer, pl_module, checkpoint)

    # -- raw weights on the validation data ---------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_epoch_end(trainer, pl_module)  # swaps the raw weights back in
        if self.validate_raw and self._average_model is not None and not trainer.sanity_checking:
            psnr, ssim = self.score_raw(trainer, pl_module)
            # Already synchronised across processes by the metrics: the mean over ranks of equal values.
            pl_module.log("val_raw/psnr", psnr, sync_dist=True, batch_size=1)
            pl_module.log("val_raw/ssim", ssim, sync_dist=True, batch_size=1)

    @torch.no_grad()
    def score_raw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[torch.Tensor, torch.Tensor]:
        """Y-PSNR / SSIM of ``pl_module.net`` (fp32, autocast off) over the trainer's validation batches."""
        scale = int(pl_module.scale)
        psnr, ssim = PSNRY(shave=scale).to(pl_module.device), SSIMY(shave=scale).to(pl_module.device)
        loaders = trainer.val_dataloaders
        loaders = list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]
        net = pl_module.net
        was_training = net.training
        net.eval()
        with torch.autocast(pl_module.device.type, enabled=False):
            for loader, limit in zip(loaders, trainer.num_val_batches):
                for i, batch in enumerate(loader):
                    if i >= limit:
                        break
                    batch = move_data_to_device(batch, pl_module.device)
                    sr = net(batch["lr"].float())
                    psnr.update(sr, batch["hr"])
                    ssim.update(sr, batch["hr"])
        net.train(was_training)
        return psnr.compute(), ssim.compute()
