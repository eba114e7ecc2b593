"""Image file I/O: files are read into uint8 HxWx3 RGB numpy arrays and written from them.

Inside the package images are float32 CHW tensors in [0, 1]; the pixel conversion is :mod:`sr_lightning.ops.pixels`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sr_lightning.ops.pixels import to_uint8
from sr_lightning.utils.atomic import atomic_path

__all__ = ["SUPPORTED_MODES", "BadImageError", "load_image", "save_image"]


class BadImageError(ValueError):
    """An image file that exists but cannot be used: truncated, corrupt, or in a mode the package cannot convert.

    The message always starts with the file's path (a DataLoader worker re-raises only the message).
    """


# PIL modes holding 16-bit samples (PNG 16-bit gray opens as I;16, some Pillow versions give I).
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_GRAY_MODES = ("L", "1", "LA", "La")
# Colour modes with a defined conversion to 8-bit RGB: RGB(+alpha), palette, and the JPEG colour spaces.
_COLOUR_MODES = ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr")
#: every mode :func:`load_image` accepts; anything else (F, LAB, HSV, ...) is a :class:`BadImageError`.
SUPPORTED_MODES = _SIXTEEN_BIT_MODES + _GRAY_MODES + _COLOUR_MODES


def _sixteen_to_uint8(im: Image.Image, path: Path) -> np.ndarray:
    arr = np.asarray(im).astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise BadImageError(f"{path}: mode {im.mode} has values outside 0..65535, cannot read it as 16-bit")
    # 65535 -> 255: round(v / 257); 257 is odd so v / 257 never ends in exactly .5.
    return np.rint(arr / 257.0).astype(np.uint8)


def load_image(path: str | Path) -> np.ndarray:
    """Load an image file as a uint8 HxWx3 RGB array (first frame of multi-frame files), fully decoded.

    - grayscale (L, 1-bit "1") is replicated to 3 identical channels (1-bit: 0 / 255);
    - 16-bit grayscale (I;16, I;16B, I;16L, I) is converted to 8 bit as ``round(v / 257)`` and replicated;
    - palette (P, PA) is expanded to RGB;
    - alpha (RGBA, LA, PA) is dropped, NOT composited over a background;
    - CMYK and YCbCr (JPEG colour spaces) go through ``PIL.Image.convert("RGB")``.
    EXIF orientation is ignored. A missing file raises ``FileNotFoundError``; a truncated or corrupt file, a decoded
    size that differs from the header's, or any other mode (float F, LAB, HSV: no defined 8-bit RGB) raise
    :class:`BadImageError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        im = Image.open(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:  # UnidentifiedImageError: OSError
        raise BadImageError(f"{path}: not a readable image ({type(err).__name__}: {err})") from err
    with im:
        header = im.size
        try:
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError) as err:  # "image file is truncated", bad chunks, ...
            raise BadImageError(f"{path}: corrupt or truncated image ({type(err).__name__}: {err})") from err
        arr = _to_rgb(im, path)
    if arr.shape[1::-1] != header:  # a decoder that returns fewer pixels than the header promises
        h, w = arr.shape[:2]
        raise BadImageError(f"{path}: decoded {w}x{h} pixels, the header says {header[0]}x{header[1]}")
    return arr


def _to_rgb(im: Image.Image, path: Path) -> np.ndarray:
    """A loaded PIL image -> uint8 HxWx3 RGB (the rules of :func:`load_image`)."""
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES:
        gray = _sixteen_to_uint8(im, path)
    elif mode in _GRAY_MODES:
        gray = np.asarray(im.convert("L"), dtype=np.uint8)
    elif mode == "F":
        raise BadImageError(f"{path}: float image (mode F) has no defined 8-bit range, not supported")
    elif mode not in _COLOUR_MODES:
        raise BadImageError(f"{path}: image mode {mode!r} is not supported (supported: {', '.join(SUPPORTED_MODES)})")
    else:
        try:
            rgb = im.convert("RGB")
        except (ValueError, OSError) as err:
            raise BadImageError(f"{path}: cannot convert image mode {mode!r} to RGB ({err})") from err
        return np.array(rgb, dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def save_image(path: str | Path, img: np.ndarray | torch.Tensor) -> None:
    """Save a uint8 HxWx3 array (or HxW gray), or a 3xHxW tensor: uint8, or float in [0, 1] (clamped and rounded
    by :func:`~sr_lightning.ops.pixels.to_uint8`).

    The format follows the file extension (use .png for lossless output); parent folders are created.
    """
    path = Path(path)
    if isinstance(img, torch.Tensor):
        if img.dim() != 3:
            raise ValueError(f"save_image expects a CxHxW tensor, got shape {tuple(img.shape)}")
        img8 = img.detach().cpu() if img.dtype == torch.uint8 else to_uint8(img.detach().cpu())
        arr = np.ascontiguousarray(img8.permute(1, 2, 0).numpy())
    else:
        arr = np.asarray(img)
        if arr.dtype != np.uint8:
            raise TypeError(f"save_image expects a uint8 array, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"save_image expects HxWx3 / HxW (or a 3xHxW tensor), got shape {arr.shape}")
    with atomic_path(path) as tmp:  # never half an image under the final name
        Image.fromarray(arr).save(tmp)
