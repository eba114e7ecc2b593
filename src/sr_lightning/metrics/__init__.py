"""SR metrics following the papers' MATLAB protocol (Y channel, shaved border, mean of per-image scores), and the
NTIRE efficient-SR challenge's RGB PSNR (an option of the benchmark, labelled as such)."""

from sr_lightning.metrics.functional import psnr_rgb_ntire, psnr_y, rgb_to_y, shave, ssim_y
from sr_lightning.metrics.sr_metrics import PSNRRGB, PSNRY, SSIMY

__all__ = ["PSNRRGB", "PSNRY", "SSIMY", "psnr_rgb_ntire", "psnr_y", "rgb_to_y", "shave", "ssim_y"]
