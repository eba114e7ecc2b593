"""Upscale images with a loaded network: tiling, self-ensemble, small-input padding, and the pixel formats of
users' files (gray, RGB, alpha, 8 and 16 bits). `sr_lightning.upscale` (the CLI) and the notebooks use this.

Pixels: 8-bit input is ``v / 255``, 16-bit input ``v / 65535``; outputs are clamped to [0, 1] and rounded back to
the input's bit depth as the metrics quantise (`sr_lightning.ops.pixels.quantize`, MATLAB ``im2uint8`` rounding).
Gray images run through the network as three equal channels; the gray output is the ITU-R BT.601 luma of the RGB
output (PIL's ``convert("L")`` weights). Alpha is upscaled on its own with bicubic interpolation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.inference.ensemble import self_ensemble
from sr_lightning.inference.runner import Runner
from sr_lightning.inference.tiling import MIN_TILE, auto_tile, cuda_budget, padded, run_tiled
from sr_lightning.ops.pixels import PEAK, PEAK16, quantize, to_float

#: default CPU memory budget of `tile="auto"` (MiB); `tile_budget_mb=` changes it
CPU_TILE_BUDGET_MB = 2048
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def as_runner(model: nn.Module | Any) -> Any:
    """A `Runner` for a plain network (float32, its current device); runners and backends are returned as they are."""
    if isinstance(model, nn.Module):
        param = next(model.parameters(), None)
        return Runner(model, device=param.device if param is not None else "cpu")
    return model


def resolve_tile(runner: Any, tile: int | str | None, budget_mb: float = CPU_TILE_BUDGET_MB) -> int | None:
    """`tile` as LR pixels (None: whole image); ``"auto"``: the largest tile fitting the GPU's free memory or, on
    CPU, `budget_mb`."""
    if tile in (None, 0, "none", "null"):
        return None
    if tile == "auto":
        on_gpu = getattr(runner, "device", torch.device("cpu")).type == "cuda"
        budget = cuda_budget() if on_gpu else budget_mb * 2**20
        return auto_tile(runner, budget, max(MIN_TILE, runner.min_input_size))
    if isinstance(tile, str) and not tile.isdigit():
        raise ValueError(f"tile must be a number of LR pixels, 'auto' or null, got {tile!r}")
    size = int(tile)
    if size < runner.min_input_size:
        raise ValueError(f"tile={size} is smaller than the network's minimum input side {runner.min_input_size}")
    return size


def upscale_tensor(
    model: nn.Module | Any,
    lr: torch.Tensor,
    tile: int | str | None = None,
    overlap: int = 16,
    ensemble: bool = False,
    tile_budget_mb: float = CPU_TILE_BUDGET_MB,
) -> torch.Tensor:
    """Super-resolve a float [0, 1] RGB image, (3,h,w) or (N,3,h,w); returns float32, clamped to [0, 1], same
    shape convention, on the input's device."""
    runner = as_runner(model)
    batch = lr if lr.dim() == 4 else lr[None]
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected an RGB image (3,h,w) or batch (N,3,h,w), got shape {tuple(lr.shape)}")
    size = resolve_tile(runner, tile, tile_budget_mb)
    if size is not None and overlap >= size:
        raise ValueError(f"tile_overlap={overlap} must be smaller than tile={size}")
    net: Callable[[torch.Tensor], torch.Tensor] = padded(runner, runner.min_input_size, runner.scale)
    min_tile = max(MIN_TILE, runner.min_input_size, 2 * overlap + 1)

    def whole(x: torch.Tensor) -> torch.Tensor:
        return run_tiled(net, x, runner.scale, size, overlap, min_tile)

    device = getattr(runner, "device", lr.device)
    x = batch.to(device, torch.float32)
    out = self_ensemble(whole, x) if ensemble else whole(x)
    out = out.clamp_(0.0, 1.0).to(lr.device)
    return out if lr.dim() == 4 else out[0]


def _to_chw(arr: np.ndarray) -> torch.Tensor:
    """HxWxC uint8 / uint16 / float [0, 1] -> float32 (C,H,W)."""
    if np.issubdtype(arr.dtype, np.floating):
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1)
    return to_float(np.ascontiguousarray(arr)).permute(2, 0, 1)


def _hwc(img: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """(C,H,W) float [0, 1] -> a C-contiguous HxWxC array of `dtype` (uint8 / uint16 quantised, float kept): the
    layout image writers take without another copy."""
    if dtype == np.uint8:
        return quantize(img, PEAK).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    if dtype == np.uint16:
        return quantize(img, PEAK16).to(torch.int32).permute(1, 2, 0).contiguous().numpy().astype(np.uint16)
    return img.permute(1, 2, 0).contiguous().numpy().astype(np.float32)


def upscale_alpha(alpha: torch.Tensor, scale: int) -> torch.Tensor:
    """Alpha (H,W) float [0, 1], upscaled by bicubic interpolation and clamped."""
    return F.interpolate(alpha[None, None], scale_factor=scale, mode="bicubic", align_corners=False)[0, 0].clamp(0, 1)


def upscale_image(
    model: nn.Module | Any,
    image: np.ndarray | torch.Tensor,
    tile: int | str | None = None,
    overlap: int = 16,
    ensemble: bool = False,
    tile_budget_mb: float = CPU_TILE_BUDGET_MB,
) -> np.ndarray | torch.Tensor:
    """Upscale an image as users hold it.

    - a numpy array HxW (gray), HxWx1, HxWx2 (gray + alpha), HxWx3 (RGB) or HxWx4 (RGBA), uint8, uint16 or float in
      [0, 1]: returns the same layout and dtype at the new size (integers rounded as the metrics quantise);
    - a float tensor (3,h,w) or (N,3,h,w) in [0, 1]: returns float32 (`upscale_tensor`).
    """
    kw = {"tile": tile, "overlap": overlap, "ensemble": ensemble, "tile_budget_mb": tile_budget_mb}
    if isinstance(image, torch.Tensor):
        return upscale_tensor(model, image, **kw)
    arr = np.asarray(image)
    if arr.dtype not in (np.uint8, np.uint16) and not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"image dtype must be uint8, uint16 or float, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an HxW, HxWx1, HxWx2, HxWx3 or HxWx4 image, got shape {image.shape}")
    colour, alpha = (arr[..., :-1], arr[..., -1]) if arr.shape[2] in (2, 4) else (arr, None)
    gray = colour.shape[2] == 1
    rgb = _to_chw(colour)
    sr = upscale_tensor(model, rgb.expand(3, -1, -1) if gray else rgb, **kw)
    out = torch.tensordot(_LUMA, sr, dims=1)[None] if gray else sr
    if alpha is not None:
        scale = sr.shape[-1] // rgb.shape[-1]
        out = torch.cat([out, upscale_alpha(_to_chw(alpha[..., None])[0], scale)[None]])
    result = _hwc(out, arr.dtype)
    return result[..., 0] if image.ndim == 2 else result
