"""The generic LightningModule: wraps any Lightning-free SR network."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sr_lightning.archs.forms import fold_prefixed, network_form, reparameterize_model, strip_prefix
from sr_lightning.formats import CHECKPOINT_KEY, FORMAT_VERSION, upgrade_checkpoint
from sr_lightning.inference.chop import forward_chop
from sr_lightning.inference.ensemble import self_ensemble
from sr_lightning.lightning.samples import log_samples
from sr_lightning.lightning.state import (
    collect_rng_states,
    logged_wandb_run_id,
    restore_intra_op_threads,
    restore_rng_states,
)
from sr_lightning.lightning.test_loop import TestLoopMixin
from sr_lightning.metrics import PSNRY, SSIMY

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class SRModule(TestLoopMixin):
    """Train / validate / benchmark one SR network.

    Args:
        net: the network (a plain `nn.Module` mapping [0,1] LR to [0,1] SR).
        loss: training criterion `loss(sr, hr)`; may be None for evaluation only.
        optimizer, scheduler: partial constructors from the `stage` config (`_partial_: true`).
        scheduler_interval: "step" or "epoch".
        scale: upscaling factor (also the metrics' border shave).
        chop: use the EDSR quadrant chop in the test loop (see `forward_chop`).
        num_val_samples: validation images saved (and sent to image-capable loggers) at every validation.
        bicubic_baseline: also score MATLAB-bicubic upscaling of the LR in the test loop.
        ensemble: the test loop scores the x8 geometric self-ensemble (`self_ensemble`; with `chop`, of chopped
            passes). Validation never does.
        ntire_psnr: the test loop also scores the NTIRE challenge's RGB PSNR (uint8 RGB, 4-pixel border).
        image_dir: the test loop writes every SR image as ``<image_dir>/<set>/<name>.png`` (None: none).

    Evaluation (validation, the test loop) always runs in float32 with autocast off, whatever the trainer's
    precision: reported numbers never depend on mixed-precision training. Checkpoints record the network form, and
    one of either form loads into a network of either form (a training-form checkpoint is folded through a copy of
    the network as it was built). They also hold the global RNG states, the intra-op thread count (``sr_threads``: a
    resumed fit uses it again unless ``OMP_NUM_THREADS`` is set) and the W&B run id, for exact resumes.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "step",
        scale: int = 4,
        chop: bool = False,
        chop_shave: int = 10,
        chop_min_size: int = 160_000,
        num_val_samples: int = 2,
        bicubic_baseline: bool = True,
        ensemble: bool = False,
        ntire_psnr: bool = False,
        image_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.scale = scale
        self.chop = chop
        self.chop_shave = chop_shave
        self.chop_min_size = chop_min_size
        self.num_val_samples = num_val_samples
        self.bicubic_baseline = bicubic_baseline
        self.ensemble = bool(ensemble)
        self.ntire_psnr = bool(ntire_psnr)
        self.image_dir = str(image_dir) if image_dir else None
        self.val_psnr = PSNRY(shave=scale)
        self.val_ssim = SSIMY(shave=scale)
        self._init_test_loop()
        #: free-form description saved in checkpoints (the entry point puts the model config and scale here)
        self.meta: dict[str, Any] = {}
        # The network as built, if it has re-parameterizable blocks: folds training-form weights for a folded network.
        # Kept in a tuple so that it is not registered as a submodule (no parameters, not in the state dict).
        self._train_template: tuple[nn.Module, ...] = (copy.deepcopy(net),) if network_form(net) == "train" else ()

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.net(lr)

    def super_resolve(self, lr: torch.Tensor, chop: bool | None = None, ensemble: bool = False) -> torch.Tensor:
        """SR of an LR batch in float32 with autocast off, whole image or chopped, optionally as the x8
        self-ensemble (no clamping: the metrics quantise). Used by validation and the test loop, so that scores
        never depend on the training precision."""
        with torch.autocast(device_type=self.device.type, enabled=False):
            lr = lr.float()
            run = self._chopped if (self.chop if chop is None else chop) else self.net
            return self_ensemble(run, lr) if ensemble else run(lr)

    def _chopped(self, lr: torch.Tensor) -> torch.Tensor:
        return forward_chop(self.net, lr, self.scale, self.chop_shave, self.chop_min_size)

    # -- checkpoints: network form, RNG states, thread count, W&B run ---------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["sr_form"] = network_form(self.net)  # "train" (re-parameterizable blocks) or "deploy"
        checkpoint[CHECKPOINT_KEY] = FORMAT_VERSION  # key names of this version (sr_lightning.formats)
        checkpoint["sr_rng"] = collect_rng_states()
        checkpoint["sr_threads"] = torch.get_num_threads()  # CPU reductions split by thread: part of an exact resume
        checkpoint["sr_meta"] = self.meta
        run_id = logged_wandb_run_id(self.loggers) if self._trainer is not None else None
        if run_id:
            checkpoint["sr_wandb_id"] = run_id

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Called before the state dict is loaded: bring the network and the checkpoint to the same form.
        self.match_checkpoint_form(checkpoint)
        if self._trainer is not None and self.trainer.state.fn == "fit":
            if "sr_rng" in checkpoint:
                restore_rng_states(checkpoint["sr_rng"])
            if "sr_threads" in checkpoint:
                restore_intra_op_threads(checkpoint["sr_threads"])

    def match_checkpoint_form(self, checkpoint: dict[str, Any]) -> None:
        """Fold the network for a deploy-form checkpoint, or fold a training-form checkpoint (its `state_dict` and
        the raw weights EMA keeps in `current_model_state`) for a folded network; updates `checkpoint["sr_form"]`."""
        upgrade_checkpoint(checkpoint)  # an older format version's key names -> today's (sr_lightning.formats)
        form, own = checkpoint.get("sr_form"), network_form(self.net)
        if form == "deploy" and own == "train":
            reparameterize_model(self.net)
            self.net.to(self.device)
        elif form == "train" and own == "deploy":
            if not self._train_template:
                raise RuntimeError(
                    "this checkpoint holds a training-form network, but the network was built folded: "
                    "use the training-form model config (e.g. drop model.conv3x3=null)"
                )
            for key in ("state_dict", "current_model_state"):
                if key in checkpoint:
                    checkpoint[key] = fold_prefixed(checkpoint[key], self._train_template[0])
            checkpoint["sr_form"] = "deploy"

    def load_network_weights(self, ckpt_path: str | Path) -> None:
        """Load the network weights of a Lightning checkpoint of this module (its `state_dict`: the EMA weights when
        EMA was on) into `self.net`, folding whichever side needs it."""
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        self.match_checkpoint_form(checkpoint)
        self.net.load_state_dict(strip_prefix(checkpoint["state_dict"]), strict=True)

    def on_fit_start(self) -> None:
        if getattr(self.loss, "needs_network", False):  # e.g. the EG loss with lambdas=auto
            self.loss.set_lambdas_from_network(self.net)

    # -- training --------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.loss is None:
            raise RuntimeError("SRModule has no loss: set `loss=...` in the config to train.")
        sr = self.net(batch["lr"])
        n = batch["lr"].shape[0]
        if callable(getattr(self.loss, "components", None)):  # losses with several terms log each of them
            parts = self.loss.components(sr, batch["hr"])
            loss = parts.pop("total")
            self.log_dict({f"train/{k}": v.detach() for k, v in parts.items()}, batch_size=n)
        else:
            loss = self.loss(sr, batch["hr"])
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        return loss

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise RuntimeError("SRModule has no optimizer: the `stage` config must define one to train.")
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval},
        }

    # -- validation ------------------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        sr = self.super_resolve(batch["lr"], chop=False)
        self.val_psnr.update(sr, batch["hr"])
        self.val_ssim.update(sr, batch["hr"])
        self.log("val/psnr", self.val_psnr, prog_bar=True, batch_size=1)
        self.log("val/ssim", self.val_ssim, batch_size=1)
        if batch_idx < self.num_val_samples and not self.trainer.sanity_checking:
            log_samples(self, batch, sr, batch_idx)
