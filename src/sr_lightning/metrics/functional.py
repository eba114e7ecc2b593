"""PSNR / SSIM on the Y channel, following the MATLAB protocol of the SR papers (EFDN, FDIWN, EDSR, ...).

Protocol (see ``shared/weights/official/README.md``):

1. SR and HR are quantised to 8 bits: ``clamp(x, 0, 1) * 255`` rounded half away from zero
   (MATLAB ``im2uint8``).
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

__all__ = ["SSIM_WIN_SIZE", "quantize", "rgb_to_y", "shave", "psnr_y", "ssim_y"]

# BT.601 "studio swing" luma on 0..255 values, as MATLAB rgb2ycbcr (coefficients sum to 219).
_Y_COEFFS = (65.481, 128.553, 24.966)
_PEAK = 255.0
#: Side of the SSIM Gaussian window (Wang et al.: 11x11, sigma 1.5); images need at least this many pixels.
SSIM_WIN_SIZE = 11
_WIN_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03


def quantize(img: torch.Tensor) -> torch.Tensor:
    """[0, 1] float image -> float64 tensor of integers 0..255.

    Rounds half away from zero like MATLAB ``im2uint8`` (``floor(x * 255 + 0.5)`` for x >= 0), not half to
    even like ``torch.round``. The product is taken in float64.
    """
    return torch.floor(img.detach().to(torch.float64).clamp(0.0, 1.0) * _PEAK + 0.5)


def rgb_to_y(img255: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB on 0..255 -> (N, 1, H, W) float64 Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255.

    A (N, 1, H, W) input is gray: it is scored as the RGB image (g, g, g), i.e. Y = 16 + 219 g / 255.
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


def _gaussian_1d(device: torch.device) -> torch.Tensor:
    """1-D factor of MATLAB ``fspecial('gaussian', 11, 1.5)``: the 2-D window is its outer product.

    Both sum to 1; fspecial's zeroing of taps below eps * max never triggers here (smallest ~1.5e-5 of max).
    """
    r = torch.arange(SSIM_WIN_SIZE, dtype=torch.float64, device=device) - (SSIM_WIN_SIZE - 1) / 2
    g = torch.exp(-(r**2) / (2 * _WIN_SIGMA**2))
    return g / g.sum()


def _filter_valid(img: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """MATLAB ``filter2(g' * g, img, 'valid')`` done separably (rows then columns; the window is symmetric).

    Sliding windows + matmul: much faster than an 11x11 float64 ``conv2d`` on CPU, same result to ~1e-15.
    """
    k = g.numel()
    return (img.unfold(-1, k, 1) @ g).unfold(-2, k, 1) @ g


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, shave_border: int) -> torch.Tensor:
    """Per-image SSIM on Y, shape (N,), float64 (Wang et al. 2004, ``ssim_index.m``, 'valid' filtering)."""
    x, y = _prepare_y(sr, hr, shave_border)
    h, w = x.shape[-2:]
    if h < SSIM_WIN_SIZE or w < SSIM_WIN_SIZE:
        raise ValueError(f"SSIM needs at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} pixels after shaving, got {h}x{w}")
    n = x.shape[0]
    # the five local moments of ssim_index.m, filtered in one call
    stats = _filter_valid(torch.cat((x, y, x * x, y * y, x * y)), _gaussian_1d(x.device)).split(n)
    mu_x, mu_y, e_xx, e_yy, e_xy = stats
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    c1 = (_K1 * _PEAK) ** 2
    c2 = (_K2 * _PEAK) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3))
