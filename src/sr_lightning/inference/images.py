"""Image files for `upscale`: read keeping what users care about (gray, alpha, 16 bits, the ICC profile, the file's
format, EXIF orientation applied), and written atomically in the same form; what cannot be kept is a warning.

Reading: ``1``/``L`` -> 8-bit gray; ``I;16*``/``I`` -> 16-bit gray; ``LA`` -> gray + alpha; ``P`` -> RGB, or RGBA
when the palette has transparency; ``RGBA``/``PA`` -> RGB + alpha; ``RGB``; ``CMYK``/``YCbCr`` -> RGB. Other modes
(float ``F``, ...) are a `BadImageError`.

Fidelity:
- 16 bits per colour channel: Pillow (and imageio, skimage.io) read 16-bit RGB as 8 bits, so a 16-bit RGB(A) TIFF
  is read with `tifffile` (it comes with scikit-image) and written back as 16-bit TIFF; a 16-bit colour PNG is read
  as 8 bits with a warning. 16-bit gray stays 16-bit in PNG and TIFF; a format that holds only 8 bits (JPEG, WebP,
  BMP) gets 8 bits, rounded as the metrics quantise, with a warning.
- The ICC profile is copied (PNG, JPEG, WebP, TIFF) when it describes the output's colours (an RGB profile for
  RGB, a gray one for gray); otherwise (CMYK converted to RGB; BMP output) it is dropped with a warning.
- A file with several frames (animated GIF / PNG / WebP, multi-page TIFF) is refused (`BadImageError`): writing
  its first frame alone would silently cut it. An MPO (a camera's JPEG with a preview or stereo picture) is
  upscaled as its main picture, with a warning.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from sr_lightning.data.io import BadImageError
from sr_lightning.ops.pixels import to_float, to_uint8
from sr_lightning.utils.atomic import atomic_path

#: formats Pillow cannot write back faithfully, and what they are written as
_REWRITE = {"GIF": "PNG", "MPO": "JPEG", "ICO": "PNG", "PCX": "PNG", "PPM": "PNG", "TGA": "PNG"}
#: file extension by output format
EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}
_SIXTEEN = ("I;16", "I;16B", "I;16L", "I;16N", "I")
#: Pillow's options for PNG outputs: zlib's run-length strategy, Z_RLE ("almost as fast as Z_HUFFMAN_ONLY, but
#: better compression for PNG image data", zlib's manual; its output does not depend on the level). PNG is lossless
#: whatever the zlib settings: the pixels read back are the same. Pillow's default (level 6) took 52 ms per Set14 x4
#: output of EFDN here, twice the network's forward pass, on the same two cores; Z_RLE takes 11.5 ms for files 2%
#: larger (the 14 outputs: 3.81 MB, against 3.74 MB; level 1 of the default strategy: 12.6 ms, 4.22 MB).
PNG_OPTIONS: dict[str, int] = {"compress_level": 1, "compress_type": zlib.Z_RLE}
#: output formats Pillow writes an ``icc_profile=`` into
_ICC_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")
#: EXIF orientation -> the numpy steps of Pillow's `exif_transpose` (flip_y, flip_x, transpose), in that order
_ORIENT = {2: (0, 1, 0), 3: (1, 1, 0), 4: (1, 0, 0), 5: (0, 0, 1), 6: (1, 0, 1), 7: (1, 1, 1), 8: (0, 1, 1)}
_TIFF_RGB = 2  # TIFF PhotometricInterpretation RGB
_TIFF_SEPARATE = 2  # TIFF PlanarConfiguration: one plane per channel
_TIFF_ASSOCIATED_ALPHA = 1  # TIFF ExtraSamples: premultiplied alpha (Pillow's "RGBa"), not kept as 16 bits


@dataclass
class Picture:
    """Pixels as read: ``pixels`` HxW (gray) or HxWx3 (RGB), uint8 or uint16; ``alpha`` HxW or None;
    ``icc_profile`` to copy to the output; ``warnings``: what the reading could not keep."""

    pixels: np.ndarray
    alpha: np.ndarray | None
    format: str
    icc_profile: bytes | None = None
    warnings: list[str] = field(default_factory=list)

    def array(self) -> np.ndarray:
        """The layout `upscale_image` takes: gray, gray + alpha, RGB or RGBA."""
        if self.alpha is None:
            return self.pixels
        colour = self.pixels[..., None] if self.pixels.ndim == 2 else self.pixels
        return np.concatenate([colour, self.alpha[..., None]], axis=2)


def _open(path: Path) -> Image.Image:
    """`Image.open` (header only); FileNotFoundError when missing, `BadImageError` naming the file otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        return Image.open(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadImageError(f"{path}: cannot decode ({type(err).__name__}: {err})") from err


def _frame_warnings(im: Image.Image, path: Path) -> list[str]:
    """Refuse several frames (one output file would silently keep the first); an MPO's main picture is a warning."""
    frames = int(getattr(im, "n_frames", 1))
    if frames <= 1:
        return []
    if im.format == "MPO":
        return [f"MPO file with {frames} pictures: only the first (the main photo) is upscaled"]
    raise BadImageError(
        f"{path}: {im.format} with {frames} frames (an animation or pages); upscale writes one picture per file and "
        "would keep only the first: extract the frames (e.g. PIL.ImageSequence) and upscale those"
    )


def probe_picture(path: str | Path) -> str:
    """The file's format from its header, with the refusals `read_picture` would make early: a missing file
    (FileNotFoundError), an undecodable header or several frames (`BadImageError`)."""
    path = Path(path)
    with _open(path) as im:
        _frame_warnings(im, path)
        return im.format or "PNG"


def read_picture(path: str | Path) -> Picture:
    """Decode `path` fully; FileNotFoundError when missing, `BadImageError` (naming the file) when unreadable."""
    path = Path(path)
    with _open(path) as im:
        try:
            notes = _frame_warnings(im, path)
            fmt = im.format or "PNG"
            icc = im.info.get("icc_profile")
            pixels, alpha = _decode(im, path, notes)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            if isinstance(err, BadImageError):
                raise
            raise BadImageError(f"{path}: cannot decode ({type(err).__name__}: {err})") from err
    icc, icc_notes = _matching_profile(icc, pixels.ndim == 2)
    return Picture(pixels, alpha, fmt, icc, notes + icc_notes)


def _decode(im: Image.Image, path: Path, notes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """(pixels, alpha) displayed as the EXIF orientation says; 16-bit RGB(A) TIFF through tifffile, other 16-bit
    colour as 8 bits with a note."""
    deep = _sixteen_bit_colour(im)  # before `getexif`, which may load the image (and drop its tiles)
    orientation = int(im.getexif().get(0x0112, 1))
    # Pillow's raw mode does not tell 16 bits for every TIFF layout (planes apart): tifffile's header does
    if im.format == "TIFF" and (tiff := _read_tiff16(path)) is not None:
        pixels, alpha = tiff
        return _orient(pixels, orientation), None if alpha is None else _orient(alpha, orientation)
    if deep:
        notes.append(
            f"16 bits per channel read as 8 bits (no installed reader keeps this 16-bit {im.format} layout; "
            "a 16-bit RGB or RGBA TIFF input keeps 16 bits)"
        )
    shown = ImageOps.exif_transpose(im)
    shown.load()
    return _split(shown, path)


def _sixteen_bit_colour(im: Image.Image) -> bool:
    """True when the file stores 16 bits per colour channel that Pillow decodes to an 8-bit mode (its raw mode,
    e.g. ``RGB;16B``, says so); 16-bit gray (``I;16``) is decoded as 16 bits and is not this case."""
    if im.mode in _SIXTEEN or not im.tile:
        return False
    args = im.tile[0][3]
    raw = args[0] if isinstance(args, tuple) and args else args
    return isinstance(raw, str) and ";16" in raw


def _read_tiff16(path: Path) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(RGB uint16, alpha uint16 or None) of a 16-bit RGB(A) TIFF's first page, or None for a layout this does not
    read (Pillow then reads it as 8 bits)."""
    try:
        import tifffile  # a scikit-image dependency; imported here so that reading other files never needs it
    except ImportError:
        return None
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        extra = tuple(page.extrasamples or ())
        if page.dtype != np.uint16 or int(page.photometric) != _TIFF_RGB or page.samplesperpixel not in (3, 4):
            return None
        if page.samplesperpixel == 4 and extra[:1] == (_TIFF_ASSOCIATED_ALPHA,):
            return None
        arr = page.asarray()
    if int(page.planarconfig) == _TIFF_SEPARATE:
        arr = np.moveaxis(arr, 0, -1)
    arr = np.ascontiguousarray(arr)
    return (arr, None) if arr.shape[2] == 3 else (arr[..., :3], arr[..., 3])


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """`arr` (HxW or HxWxC) displayed as its EXIF orientation says, as Pillow's `ImageOps.exif_transpose` does."""
    flip_y, flip_x, transpose = _ORIENT.get(orientation, (0, 0, 0))
    if flip_y:
        arr = arr[::-1]
    if flip_x:
        arr = arr[:, ::-1]
    if transpose:
        arr = arr.swapaxes(0, 1)
    return np.ascontiguousarray(arr)


def _matching_profile(icc: bytes | None, gray: bool) -> tuple[bytes | None, list[str]]:
    """The ICC profile to copy when it describes the output's colours (bytes 16..20 of its header name the colour
    space), else None and a warning (a CMYK file's profile does not describe the RGB pixels it becomes)."""
    if not icc:
        return None, []
    space = icc[16:20].decode("ascii", "replace").strip()
    if space == ("GRAY" if gray else "RGB"):
        return icc, []
    return None, [f"ICC profile for {space} colours not copied (the output's pixels are {'gray' if gray else 'RGB'})"]


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


def write_picture(
    path: str | Path, array: np.ndarray, fmt: str, quality: int = 95, icc_profile: bytes | None = None
) -> list[str]:
    """Write an `upscale_image` result (gray / gray+alpha / RGB / RGBA, uint8 or uint16) atomically as `fmt`, with
    `icc_profile`; returns warnings for what `fmt` cannot hold (16 bits written as 8; an ICC profile in BMP).

    JPEG holds no alpha: ValueError (choose format=png)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if fmt == "JPEG" and array.ndim == 3 and array.shape[2] in (2, 4):
        raise ValueError("JPEG cannot store alpha: choose format=png (or webp, tif)")
    notes: list[str] = []
    if array.dtype == np.uint16 and fmt != "TIFF" and not (fmt == "PNG" and array.ndim == 2):
        what = "16-bit gray" if array.ndim == 2 else "16-bit colour"
        hint = "format=png or tif" if array.ndim == 2 else "format=tif"
        notes.append(f"{what} written as 8 bits ({fmt} output; {hint} keeps 16 bits)")
        array = _to_uint8(array)
    if icc_profile and fmt not in _ICC_FORMATS:
        notes.append(f"ICC profile not copied ({fmt} output cannot hold it; format=png keeps it)")
        icc_profile = None
    with atomic_path(path) as tmp:
        if array.dtype == np.uint16 and array.ndim == 3:  # Pillow has no 16-bit colour modes
            _write_tiff16(tmp, array, icc_profile)
        else:
            options: dict[str, object] = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
            if fmt == "PNG":
                options.update(PNG_OPTIONS)
            if icc_profile:
                options["icc_profile"] = icc_profile
            Image.fromarray(array).save(tmp, format=fmt, **options)  # uint16 gray -> mode I;16
    return notes


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """16-bit pixels as 8 bits, with the metrics' rounding (MATLAB `im2uint8`), not Pillow's clipping at 255."""
    return to_uint8(to_float(array)).numpy()


def _write_tiff16(path: Path, array: np.ndarray, icc_profile: bytes | None) -> None:
    """A 16-bit HxWxC TIFF: RGB (C=3), RGB + unassociated alpha (C=4) or gray + alpha (C=2)."""
    import tifffile

    photometric = "minisblack" if array.shape[2] == 2 else "rgb"
    extra = ("unassalpha",) if array.shape[2] in (2, 4) else None
    tifffile.imwrite(path, array, photometric=photometric, extrasamples=extra, iccprofile=icc_profile)
