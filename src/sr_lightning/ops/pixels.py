"""The one home of pixel-value conversion between 8-bit images and float images in [0, 1].

float -> 8 bit follows MATLAB ``im2uint8`` (the papers' evaluation protocol): clamp to [0, 1], multiply by 255 in
float64 and round half away from zero, ``floor(x * 255 + 0.5)``; not ``torch.round`` (half to even), and not a
float32 product, which can round ``x * 255`` onto a .5 tie it does not reach. 8 bit -> float is ``v / 255`` in
float32. Metrics, the bicubic baseline, image saving and the datasets all convert through these functions.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["PEAK", "PEAK16", "quantize", "to_uint8", "to_float"]

#: the largest 8-bit value: [0, 1] floats map to 0..PEAK
PEAK = 255.0
#: the largest 16-bit value (16-bit PNG, MATLAB ``im2uint16``)
PEAK16 = 65535.0


def quantize(img: torch.Tensor, peak: float = PEAK) -> torch.Tensor:
    """[0, 1] float image -> float64 tensor of the integers 0..peak it stores as 8 (or, peak=PEAK16, 16) bits.

    ``floor(clamp(x, 0, 1) * peak + 0.5)`` with the product in float64 (MATLAB ``im2uint8`` / ``im2uint16``).
    """
    return torch.floor(img.detach().to(torch.float64).clamp(0.0, 1.0) * peak + 0.5)


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """[0, 1] float image -> uint8 tensor of the same shape and device, rounded by :func:`quantize`."""
    return quantize(img).to(torch.uint8)


def to_float(img: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 image (tensor, or numpy array: possibly a read-only memmap or a strided view) -> float32 ``v / 255``;
    a uint16 numpy array -> float32 ``v / 65535``.

    The shape is kept; a numpy array becomes a CPU tensor (its layout is the caller's: transpose an HxWxC file
    array to CxHxW first).
    """
    if isinstance(img, np.ndarray) and img.dtype == np.uint16:
        return torch.from_numpy(img.astype(np.int32)).float().div_(PEAK16)
    if isinstance(img, np.ndarray):
        arr = np.ascontiguousarray(img)
        if not arr.flags.writeable:  # torch.from_numpy warns on read-only memory: copy (only the patch, usually)
            arr = arr.copy()
        img = torch.from_numpy(arr)
    if img.dtype != torch.uint8:
        raise TypeError(f"to_float expects a uint8 image, got {img.dtype}")
    return img.float().div_(PEAK)
