"""Validation image samples: saved as PNG under the run directory and sent to loggers that take images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F


def sample_strip(lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor, max_side: int = 256) -> torch.Tensor:
    """[LR (nearest-upsampled) | SR | HR] side by side, centre-cropped to at most `max_side` pixels high/wide."""
    scale = hr.shape[-1] // lr.shape[-1]
    lr_up = F.interpolate(lr[None], scale_factor=scale, mode="nearest")[0]
    H, W = hr.shape[-2:]
    h, w = min(H, max_side), min(W, max_side)
    top, left = (H - h) // 2, (W - w) // 2

    def crop(x: torch.Tensor) -> torch.Tensor:
        return x[..., top : top + h, left : left + w]

    return torch.cat([crop(lr_up), crop(sr.clamp(0, 1)), crop(hr)], dim=-1)


def log_samples(module: L.LightningModule, batch: dict[str, Any], sr: torch.Tensor, index: int) -> None:
    """Save the first image of `batch` as an LR|SR|HR strip and log it to image-capable loggers (W&B)."""
    if module.global_rank != 0:
        return
    from sr_lightning.data.io import save_image

    strip = sample_strip(batch["lr"][0].detach().cpu(), sr[0].detach().float().cpu(), batch["hr"][0].cpu())
    name = batch["name"][0] if "name" in batch else str(index)
    step = module.global_step
    out = Path(module.trainer.default_root_dir) / "samples" / f"step{step:07d}_{name}.png"
    save_image(out, strip)
    for logger in module.loggers:
        if hasattr(logger, "log_image"):  # WandbLogger, TensorBoard has add_image under .experiment instead
            logger.log_image(key=f"val/sample_{index}", images=[str(out)], caption=[f"{name}: LR | SR | HR"], step=step)
