"""Small building blocks of the in-process Lightning tests: a network with re-parameterizable blocks and the SR data
module on the embedded sample photographs (x2, 16-pixel LR patches, no workers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from sr_lightning.archs.edbb import make_edbb
from sr_lightning.data.datamodule import SRDataModule
from sr_lightning.data.sample import SampleImages

NO_IDENTITY = ("conv3x3", "conv1x1", "expand", "sobel_x", "sobel_y", "laplacian")


def edbb_net() -> nn.Module:
    """Not EFDN: any x2 network holding re-parameterizable blocks (two EDBBs), small enough for a few CPU steps."""
    torch.manual_seed(0)
    return nn.Sequential(
        make_edbb(3, 8, branches=NO_IDENTITY), nn.PReLU(8), make_edbb(8, 12, branches=NO_IDENTITY), nn.PixelShuffle(2)
    )


def sample_datamodule(batch_size: int = 2, test: bool = False, **kwargs: object) -> SRDataModule:
    """x2 patches of the 10 training photographs; the 3 held-out ones for validation (and as test set `sample`)."""
    return SRDataModule(
        train=SampleImages("train", scale=2),
        val=SampleImages("heldout", scale=2),
        test={"sample": SampleImages("heldout", scale=2)} if test else None,
        scale=2,
        lr_patch_size=16,
        batch_size=batch_size,
        num_workers=0,
        **kwargs,
    )


def quiet_trainer(root: Path, callbacks: list, max_steps: int, val_every: int | None, **kwargs: Any) -> L.Trainer:
    """A step-based `lightning.Trainer` without logger, progress bar, summary or sanity check; validation every
    ``val_every`` steps. Other Trainer arguments (``limit_val_batches``, ``plugins``, ``devices``...) pass through."""
    return L.Trainer(
        **{
            "max_steps": max_steps,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "val_check_interval": val_every,
            "check_val_every_n_epoch": None,
            "default_root_dir": root,
            "callbacks": callbacks,
            **kwargs,
        }
    )
