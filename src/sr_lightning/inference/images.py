"""Image files for `upscale`: read keeping what users care about (gray, alpha, 16 bits, the file's format, EXIF
orientation applied), and written atomically in the same form.

Reading: ``1``/``L`` -> 8-bit gray; ``I;16*``/``I`` -> 16-bit gray; ``LA`` -> gray + alpha; ``P`` -> RGB, or RGBA
when the palette has transparency; ``RGBA``/``PA`` -> RGB + alpha; ``RGB``; ``CMYK``/``YCbCr`` -> RGB. Other modes
(float ``F``, ...) are a `BadImageError`. Pillow reads 16-bit RGB PNGs as 8-bit RGB, so only gray keeps 16 bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from sr_lightning.data.io import BadImageError
from sr_lightning.utils.atomic import atomic_path

#: formats Pillow cannot write back faithfully, and what they are written as
_REWRITE = {"GIF": "PNG", "MPO": "JPEG", "ICO": "PNG", "PCX": "PNG", "PPM": "PNG", "TGA": "PNG"}
#: file extension by output format
EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}
_SIXTEEN = ("I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass
class Picture:
    """Pixels as read: ``pixels`` HxW (gray) or HxWx3 (RGB), uint8 or uint16; ``alpha`` HxW or None."""

    pixels: np.ndarray
    alpha: np.ndarray | None
    format: str

    def array(self) -> np.ndarray:
        """The layout `upscale_image` takes: gray, gray + alpha, RGB or RGBA."""
        if self.alpha is None:
            return self.pixels
        colour = self.pixels[..., None] if self.pixels.ndim == 2 else self.pixels
        return np.concatenate([colour, self.alpha[..., None]], axis=2)


def read_picture(path: str | Path) -> Picture:
    """Decode `path` fully; FileNotFoundError when missing, `BadImageError` (naming the file) when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            fmt = im.format or "PNG"
            im = ImageOps.exif_transpose(im)
            im.load()
            return Picture(*_split(im, path), format=fmt)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        if isinstance(err, BadImageError):
            raise
        raise BadImageError(f"{path}: cannot decode ({type(err).__name__}: {err})") from err


def _split(im: Image.Image, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    mode = im.mode
    if mode in ("1", "L"):
        return np.asarray(im.convert("L")), None
    if mode in _SIXTEEN:
        arr = np.asarray(im).astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise BadImageError(f"{path}: mode {mode} holds values outside 0..65535")
        return arr.astype(np.uint16), None
    if mode in ("LA", "La"):
        arr = np.asarray(im.convert("LA"))
        return arr[..., 0], arr[..., 1]
    if mode == "P" and "transparency" not in im.info:
        return np.asarray(im.convert("RGB")), None
    if mode in ("P", "PA", "RGBA", "RGBa"):
        arr = np.asarray(im.convert("RGBA"))
        return arr[..., :3], arr[..., 3]
    if mode in ("RGB", "RGBX", "CMYK", "YCbCr"):
        return np.asarray(im.convert("RGB")), None
    raise BadImageError(f"{path}: image mode {mode} is not supported (gray, 16-bit gray, RGB, RGBA, palette)")


def output_format(source: str, chosen: str | None) -> str:
    """The Pillow format to write: `chosen` (``png``, ``jpg``, ...) or the source's own (GIF and the like: PNG)."""
    if chosen:
        name = {"JPG": "JPEG", "TIF": "TIFF"}.get(chosen.upper(), chosen.upper())
        if name not in EXTENSIONS:
            raise ValueError(f"output format must be one of {sorted(EXTENSIONS)}, got {chosen!r}")
        return name
    name = _REWRITE.get(source, source)
    return name if name in EXTENSIONS else "PNG"


def write_picture(path: str | Path, array: np.ndarray, fmt: str, quality: int = 95) -> None:
    """Write an `upscale_image` result (gray / gray+alpha / RGB / RGBA, uint8 or uint16) atomically as `fmt`.

    JPEG holds neither alpha nor 16 bits: ValueError (choose format=png)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    has_alpha = array.ndim == 3 and array.shape[2] in (2, 4)
    if fmt == "JPEG" and (has_alpha or array.dtype == np.uint16):
        raise ValueError("JPEG cannot store alpha or 16-bit pixels: choose format=png")
    if array.dtype == np.uint16 and array.ndim != 2:
        raise ValueError("only 16-bit gray images can be written (Pillow has no 16-bit colour modes)")
    im = Image.fromarray(array)  # uint16 gray -> mode I;16
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    with atomic_path(path) as tmp:
        im.save(tmp, format=fmt, **options)
