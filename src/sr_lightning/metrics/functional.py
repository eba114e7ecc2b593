"""PSNR / SSIM on the Y channel, following the MATLAB protocol of the SR papers (EFDN, FDIWN, EDSR, ...).

Protocol (see ``shared/weights/official/README.md``):

1. SR and HR are quantised to 8 bits: ``clamp(x, 0, 1) * 255`` rounded half away from zero
   (MATLAB ``im2uint8``, :func:`sr_lightning.ops.pixels.quantize`).
2. Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 on 0..255 values (ITU-R BT.601, MATLAB ``rgb2ycbcr``),
   kept in floating point (not rounded to an integer). A 1-channel image is gray replicated to RGB.
3. ``shave`` pixels removed at every border (``shave = scale`` in the papers).
4. PSNR = 10 log10(255^2 / MSE); SSIM of Wang et al. 2004 (``ssim_index.m``): 11x11 Gaussian window,
   sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, 'valid' filtering, mean of the SSIM map
   (no automatic down-sampling).
5. Each image is scored on its own; a data set score is the mean of per-image scores (not a pooled MSE).

Everything is computed in float64. Inputs are float NCHW images in [0, 1] (C = 3 RGB or C = 1 gray).
"""

from __future__ import annotations

import torch
from kornia.metrics import ssim as kornia_ssim

from sr_lightning.ops.pixels import quantize

__all__ = ["NTIRE_BORDER", "SSIM_WIN_SIZE", "psnr_rgb_ntire", "psnr_y", "rgb_to_y", "shave", "ssim_y"]

# BT.601 "studio swing" luma on 0..255 values, as MATLAB rgb2ycbcr (coefficients sum to 219).
_Y_COEFFS = (65.481, 128.553, 24.966)
_PEAK = 255.0
#: Side of the SSIM Gaussian window (Wang et al.: 11x11, sigma 1.5); images need at least this many pixels.
SSIM_WIN_SIZE = 11
#: Border the NTIRE efficient-SR challenge crops before its RGB PSNR, at every scale.
NTIRE_BORDER = 4


def rgb_to_y(img255: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB on 0..255 -> (N, 1, H, W) float64 Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255.

    A (N, 1, H, W) input is gray: it is scored as the RGB image (g, g, g), i.e. Y = 16 + 219 g / 255.
    Not ``kornia.color.rgb_to_ycbcr``: its Y is full range (tests/test_metrics.py::test_kornia_ycbcr_is_full_range_y).
    """
    if img255.ndim != 4 or img255.shape[1] not in (1, 3):
        raise ValueError(f"rgb_to_y expects (N, 3, H, W) or (N, 1, H, W) images, got shape {tuple(img255.shape)}")
    x = img255.to(torch.float64)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 16.0 + (_Y_COEFFS[0] * r + _Y_COEFFS[1] * g + _Y_COEFFS[2] * b) / _PEAK


def shave(img: torch.Tensor, border: int) -> torch.Tensor:
    """Remove ``border`` pixels from every side of the last two dimensions (no-op for ``border == 0``)."""
    if border < 0:
        raise ValueError(f"shave border must be >= 0, got {border}")
    h, w = img.shape[-2:]
    if 2 * border >= h or 2 * border >= w:
        raise ValueError(f"cannot shave {border} pixels per side from a {h}x{w} image: nothing would remain")
    if border == 0:
        return img
    return img[..., border:-border, border:-border]


def _prepare_y(sr: torch.Tensor, hr: torch.Tensor, shave_border: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes, quantise, convert to Y and shave both images."""
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr must have the same shape, got {tuple(sr.shape)} and {tuple(hr.shape)}")
    if sr.ndim != 4 or sr.shape[1] not in (1, 3):
        raise ValueError(f"expected NCHW images with C in (1, 3), got shape {tuple(sr.shape)}")
    y_sr = shave(rgb_to_y(quantize(sr)), shave_border)
    y_hr = shave(rgb_to_y(quantize(hr)), shave_border)
    return y_sr, y_hr


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, shave_border: int) -> torch.Tensor:
    """Per-image PSNR (dB) on Y, shape (N,), float64.

    Identical images (MSE = 0) give ``+inf``; it is never NaN since the Y MSE is bounded (PSNR > 0).
    """
    y_sr, y_hr = _prepare_y(sr, hr, shave_border)
    mse = (y_sr - y_hr).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(_PEAK**2 / mse)  # mse == 0 -> 255^2 / 0 = inf -> inf


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, shave_border: int) -> torch.Tensor:
    """Per-image SSIM on Y, shape (N,), float64 (Wang et al. 2004, ``ssim_index.m``, 'valid' filtering).

    The SSIM map is kornia's: its fixed sigma 1.5 and K = (0.01, 0.03) with ``max_val=255``, ``eps=0`` and
    ``padding="valid"`` are ``ssim_index.m``'s settings (within 1.5e-15 of the MATLAB formula on Set5/Set14).
    """
    x, y = _prepare_y(sr, hr, shave_border)
    h, w = x.shape[-2:]
    if h < SSIM_WIN_SIZE or w < SSIM_WIN_SIZE:
        raise ValueError(f"SSIM needs at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} pixels after shaving, got {h}x{w}")
    ssim_map = kornia_ssim(x, y, SSIM_WIN_SIZE, max_val=_PEAK, eps=0.0, padding="valid")
    return ssim_map.mean(dim=(1, 2, 3))


def psnr_rgb_ntire(sr: torch.Tensor, hr: torch.Tensor, shave_border: int = NTIRE_BORDER) -> torch.Tensor:
    """Per-image RGB PSNR (dB) of the NTIRE efficient-SR challenge's validation scoring, shape (N,), float64.

    Not the papers' metric (:func:`psnr_y`): the challenge script (``utils_image.tensor2uint`` +
    ``calculate_psnr``) quantises with ``round(clamp(x, 0, 1) * 255)`` on float32 values, rounding half to even as
    numpy does, crops ``shave_border`` pixels (4 at every scale) and pools the MSE over the three RGB channels.
    A gray (1-channel) image is scored as it is.
    """
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr must have the same shape, got {tuple(sr.shape)} and {tuple(hr.shape)}")
    x = torch.round(sr.detach().float().clamp(0.0, 1.0) * _PEAK).to(torch.float64)
    y = torch.round(hr.detach().float().clamp(0.0, 1.0) * _PEAK).to(torch.float64)
    mse = (shave(x, shave_border) - shave(y, shave_border)).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(_PEAK**2 / mse)
