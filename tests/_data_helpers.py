"""Builders of small stand-in dataset folders (tmp_path only) from real photographs shipped by scikit-image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sr_lightning.data.datasets import bicubic_lr
from sr_lightning.data.io import load_image, save_image
from sr_lightning.data.sample import sample_files
from sr_lightning.ops.imresize import imresize


def real_crops(n: int, height: int = 122, width: int = 98) -> list[np.ndarray]:
    """``n`` distinct crops (uint8 HxWx3) of real photographs; sizes deliberately not multiples of 4 or 3."""
    photos = [load_image(p) for p in sample_files("train")[:4]]
    out = []
    for k in range(n):
        img = photos[k % len(photos)]
        top, left = 37 * (k // len(photos)) + 11, 29 * (k // len(photos)) + 5
        out.append(np.ascontiguousarray(img[top : top + height, left : left + width]))
    return out


def write_set(
    hr_dir: Path, lr_root: Path | None, names: list[str], lr_scales: tuple[int, ...], seed: int = 0
) -> dict[str, np.ndarray]:
    """Write HR crops as ``hr_dir/<name>.png`` and official-style LR ``lr_root/X<s>/<name>x<s>.png``."""
    hr_dir.mkdir(parents=True, exist_ok=True)
    crops = real_crops(len(names) + seed)[seed:]
    images = {}
    for name, img in zip(names, crops):
        save_image(hr_dir / f"{name}.png", img)
        images[name] = img
        for s in lr_scales:
            save_image(lr_root / f"X{s}" / f"{name}x{s}.png", bicubic_lr(img, s))
    return images


def make_div2k(root: Path, lr_scales: tuple[int, ...] = (2,)) -> None:
    """``root/DIV2K``: train 0001-0003, valid 0801-0802, LR_bicubic only for ``lr_scales``."""
    base = root / "DIV2K"
    write_set(base / "DIV2K_train_HR", base / "DIV2K_train_LR_bicubic", ["0001", "0002", "0003"], lr_scales)
    write_set(base / "DIV2K_valid_HR", base / "DIV2K_valid_LR_bicubic", ["0801", "0802"], lr_scales, seed=3)


def make_flickr2k(root: Path, lr_scales: tuple[int, ...] = (2,)) -> None:
    """``root/Flickr2K``: 000001-000002, LR_bicubic only for ``lr_scales``."""
    base = root / "Flickr2K"
    write_set(base / "Flickr2K_HR", base / "Flickr2K_LR_bicubic", ["000001", "000002"], lr_scales, seed=5)


def bicubic_u8(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB bicubic of a uint8 CHW tensor."""
    return imresize(hr.contiguous(), scale=1.0 / scale)


def to_u8(t: torch.Tensor) -> torch.Tensor:
    """float [0, 1] tensor (exact multiples of 1/255) back to uint8."""
    return torch.round(t * 255).to(torch.uint8)
