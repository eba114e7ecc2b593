"""SR metrics following the papers' MATLAB protocol (Y channel, shaved border, mean of per-image scores)."""

from sr_lightning.metrics.functional import psnr_y, rgb_to_y, shave, ssim_y
from sr_lightning.metrics.sr_metrics import PSNRY, SSIMY

__all__ = ["PSNRY", "SSIMY", "psnr_y", "rgb_to_y", "shave", "ssim_y"]
