"""Scoring upscaled images as the test loop does (shared by the upscale and export tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sr_lightning.data.io import load_image
from sr_lightning.inference.upscaler import upscale_image
from sr_lightning.metrics.functional import psnr_y, ssim_y
from sr_lightning.ops.pixels import to_float


def score(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float]:
    """Y-PSNR / SSIM of uint8 HxWx3 images as the test loop scores them (HR mod-cropped to the SR size)."""
    hr = hr[: sr.shape[0], : sr.shape[1]]
    a, b = (to_float(x).permute(2, 0, 1)[None] for x in (sr, hr))
    return float(psnr_y(a, b, scale)), float(ssim_y(a, b, scale))


def set_psnr(model: Any, benchmark_dir: Path, name: str, scale: int, limit: int | None = None, **options: Any) -> float:
    """Mean Y-PSNR of `upscale_image(model, official LR)` over a benchmark set (its first `limit` images)."""
    root = benchmark_dir / name
    values = []
    for hr_path in sorted((root / "HR").glob("*.png"))[:limit]:
        lr = load_image(root / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png")
        values.append(score(upscale_image(model, lr, **options), load_image(hr_path), scale)[0])
    return float(np.mean(values))
