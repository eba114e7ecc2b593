"""Aligned LR/HR patch cropping and the 8 dihedral augmentations (EDSR-style training pipeline).

An LR patch at (top, left) of size p pairs with the HR patch at (top * s, left * s) of size p * s; flips and
90-degree rotations are applied identically to both, so the pair stays aligned. All functions work on
tensors shaped (..., C, H, W) of any dtype; the crops also on numpy arrays in that layout, so that
:class:`~sr_lightning.data.patches.TrainPatches` crops the decoded uint8 images (CxHxW views of the HxWxC files)
and converts only the patch to float: the one crop code path for both.
"""

from __future__ import annotations

import numpy as np
import torch

#: an image or batch shaped (..., C, H, W): a tensor, or a numpy array (cropping only)
Array = torch.Tensor | np.ndarray

__all__ = ["crop_position", "crop_pair", "random_crop_pair", "apply_augment_pair", "augment_pair"]


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(high, (1,), generator=generator).item())


def crop_position(lr_size: tuple[int, int], lr_patch: int, generator: torch.Generator | None = None) -> tuple[int, int]:
    """Uniform random (top, left) of an ``lr_patch`` square inside an LR image of size (h, w)."""
    h, w = int(lr_size[0]), int(lr_size[1])
    if lr_patch < 1:
        raise ValueError(f"lr_patch must be positive, got {lr_patch}")
    if h < lr_patch or w < lr_patch:
        raise ValueError(
            f"image too small for the patch: LR is {h}x{w} (HxW) but the LR patch is {lr_patch}x{lr_patch}; "
            "lower lr_patch_size or drop small images (TrainPatches(small_images='skip'))"
        )
    return _randint(h - lr_patch + 1, generator), _randint(w - lr_patch + 1, generator)


def crop_pair(lr: Array, hr: Array, top: int, left: int, lr_patch: int, scale: int) -> tuple[Array, Array]:
    """LR[top:top+p, left:left+p] and the HR region it covers, HR[s*top : s*(top+p), s*left : s*(left+p)]."""
    s, p = int(scale), int(lr_patch)
    _check_pair(lr, hr, s)
    lr_c = lr[..., top : top + p, left : left + p]
    hr_c = hr[..., top * s : (top + p) * s, left * s : (left + p) * s]
    return lr_c, hr_c


def random_crop_pair(
    lr: Array, hr: Array, lr_patch: int, scale: int, generator: torch.Generator | None = None
) -> tuple[Array, Array]:
    """Aligned random crop: an ``lr_patch`` LR square and its ``lr_patch * scale`` HR square (views, not copies).

    Draws the position with :func:`crop_position` (two ``torch.randint`` calls from ``generator``: top, then left).
    """
    _check_pair(lr, hr, int(scale))
    top, left = crop_position((lr.shape[-2], lr.shape[-1]), lr_patch, generator)
    return crop_pair(lr, hr, top, left, lr_patch, scale)


def apply_augment_pair(
    lr: torch.Tensor, hr: torch.Tensor, hflip: bool = False, vflip: bool = False, rot90: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the same horizontal flip, vertical flip and 90-degree rotation to LR and HR (no randomness).

    ``rot90`` rotates by 90 degrees counter-clockwise (after the flips); together the three flags give the
    8 symmetries of the square used by EDSR (hflip, vflip, rot90 each with probability 1/2).
    """

    def f(x: torch.Tensor) -> torch.Tensor:
        if hflip:
            x = x.flip(-1)
        if vflip:
            x = x.flip(-2)
        if rot90:
            x = torch.rot90(x, 1, dims=(-2, -1))
        return x.contiguous()

    return f(lr), f(hr)


def augment_pair(
    lr: torch.Tensor,
    hr: torch.Tensor,
    hflip: bool = True,
    vflip: bool = True,
    rot90: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random augmentation: each enabled flip/rotation is drawn with probability 1/2 and applied to both."""
    flags = torch.rand(3, generator=generator) < 0.5
    return apply_augment_pair(
        lr, hr, hflip=hflip and bool(flags[0]), vflip=vflip and bool(flags[1]), rot90=rot90 and bool(flags[2])
    )


def _check_pair(lr: Array, hr: Array, scale: int) -> None:
    h, w = lr.shape[-2], lr.shape[-1]
    if hr.shape[-2] != h * scale or hr.shape[-1] != w * scale:
        raise ValueError(f"LR {h}x{w} and HR {hr.shape[-2]}x{hr.shape[-1]} (HxW) are not aligned at scale {scale}")
