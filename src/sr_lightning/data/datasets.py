"""Full-image super-resolution datasets: LR/HR folder pairs, or HR only with the LR made by MATLAB bicubic.

Every dataset returns ``dict(lr=Tensor[3, h, w], hr=Tensor[3, h*s, w*s], name=str)``, float32 RGB in [0, 1].
HR is mod-cropped to a multiple of the scale, ``HR[:H - H % s, :W - W % s]``, as in the benchmark protocol.
Missing LR images are generated as MATLAB ``imresize(modcrop(HR, s), 1/s, 'bicubic')`` on the uint8
image, which is how the official DIV2K/Flickr2K/benchmark LR files were made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from sr_lightning.data.cache import ImageCache
from sr_lightning.data.io import load_image
from sr_lightning.data.scan import FileCheck
from sr_lightning.ops.imresize import imresize, modcrop
from sr_lightning.ops.pixels import to_float

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageItem",
    "SRImageDataset",
    "PairedFolderDataset",
    "HRFolderDataset",
    "list_images",
    "bicubic_lr",
    "pair_items",
    "pair_size_error",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
PathLike = str | os.PathLike


@dataclass(frozen=True)
class ImageItem:
    """One image of a dataset: its name, HR file, and official LR file (None: generate from HR)."""

    name: str
    hr: Path
    lr: Path | None = None


def list_images(folder: PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; clear error if the folder is missing/empty."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return files


def bicubic_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(modcrop(hr, s), 1/s, 'bicubic')`` on a uint8 HxWx3 array -> uint8 hxwx3."""
    t = torch.from_numpy(np.array(modcrop(hr, scale), dtype=np.uint8, order="C")).permute(2, 0, 1)
    return imresize(t, scale=1.0 / scale).permute(1, 2, 0).contiguous().numpy()


def pair_items(
    hr_files: Sequence[Path], lr_dir: PathLike | None, scale: int, lr_pattern: str, require: bool
) -> list[ImageItem]:
    """Match each HR file with ``lr_dir / lr_pattern.format(stem=, scale=, ext=)``.

    ``require=True``: an HR file without its LR partner is an error (listing the missing ones);
    ``require=False``: those items get ``lr=None`` and their LR is generated.
    """
    items, missing = [], []
    lr_root = Path(lr_dir).expanduser() if lr_dir is not None else None
    for hr in hr_files:
        lr = None
        if lr_root is not None:
            cand = lr_root / lr_pattern.format(stem=hr.stem, scale=scale, ext=hr.suffix)
            if cand.is_file():
                lr = cand
            elif require:
                missing.append(cand.name)
        items.append(ImageItem(hr.stem, hr, lr))
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise FileNotFoundError(
            f"{len(missing)} HR image(s) have no LR partner in {lr_root} (pattern {lr_pattern!r}): {shown}"
        )
    return items


def pair_size_error(item: ImageItem, lr_wh: tuple[int, int], hr_wh: tuple[int, int], scale: int) -> str | None:
    """Why ``item``'s LR (width, height) does not fit its HR (width, height) at ``scale``; None when it does.

    The HR is mod-cropped to ``HR[:H - H % s, :W - W % s]`` first; the message starts with the offending file.
    """
    (lw, lh), (w, h), s = lr_wh, hr_wh, scale
    cw, ch = w - w % s, h - h % s
    if item.lr is None:
        if cw == 0 or ch == 0:
            return f"{item.hr}: HR image {w}x{h} is smaller than the scale x{s}, no LR image can be made from it"
        return None
    if (lw * s, lh * s) == (cw, ch):
        return None
    return (
        f"{item.lr}: size mismatch for {item.name!r}: LR {lw}x{lh} at x{s} gives {lw * s}x{lh * s}, but the "
        f"mod-cropped HR {item.hr} is {cw}x{ch} (width x height; the LR file should be {cw // s}x{ch // s})"
    )


class SRImageDataset(Dataset):
    """Base class: a list of :class:`ImageItem` + scale + decoded-image cache.

    ``load_pair(i)`` returns uint8 HxWx3 arrays (LR, mod-cropped HR, name) without float conversion, which
    :class:`~sr_lightning.data.patches.TrainPatches` uses to crop before converting.
    """

    def __init__(
        self,
        items: Sequence[ImageItem],
        scale: int,
        cache: str = "memory",
        cache_dir: PathLike | None = None,
    ) -> None:
        scale = int(scale)
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        if not items:
            raise ValueError(f"{type(self).__name__}: no images")
        self.items = list(items)
        self.scale = scale
        self.cache = ImageCache(cache, cache_dir)
        self._sizes: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self.items)

    @property
    def names(self) -> list[str]:
        return [it.name for it in self.items]

    @property
    def lr_source(self) -> str:
        """LR origin: "official" if every LR is read from a file, "generated" if none is, else "mixed"."""
        n_official = sum(it.lr is not None for it in self.items)
        if n_official == len(self.items):
            return "official"
        return "generated" if n_official == 0 else "mixed"

    def files(self) -> list[Path]:
        """Every image file the dataset reads: each item's HR file and its LR file when it has one."""
        return [f for it in self.items for f in (it.hr, it.lr) if f is not None]

    def verify(self, checks: Mapping[Path, FileCheck]) -> dict[int, str]:
        """``{index: problem}`` for the items whose files failed ``checks`` (from
        :func:`~sr_lightning.data.scan.scan_images`) or whose LR/HR sizes do not match the scale; every problem starts
        with the offending file.

        The decoded sizes of the good items are kept, so :meth:`hr_size` then needs no file access.
        """
        problems: dict[int, str] = {}
        for i, it in enumerate(self.items):
            hr = checks[it.hr]
            lr = checks[it.lr] if it.lr is not None else FileCheck(it.hr, (0, 0))
            bad = hr.error or lr.error or pair_size_error(it, lr.size, hr.size, self.scale)
            if bad:
                problems[i] = bad
            else:
                w, h = hr.size
                self._sizes[i] = (h - h % self.scale, w - w % self.scale)
        return problems

    def lr_size(self, index: int) -> tuple[int, int]:
        """(h, w) of the LR image (= mod-cropped HR size / scale; official LR files must match it)."""
        h, w = self.hr_size(index)
        return h // self.scale, w // self.scale

    def hr_size(self, index: int) -> tuple[int, int]:
        """(H, W) of the mod-cropped HR image: the decoded size after :meth:`verify`, else read from the header."""
        if index not in self._sizes:
            with Image.open(self.items[index].hr) as im:
                w, h = im.size
            self._sizes[index] = (h - h % self.scale, w - w % self.scale)
        return self._sizes[index]

    def load_hr(self, index: int) -> np.ndarray:
        """Mod-cropped HR, uint8 HxWx3 (possibly a read-only view)."""
        item = self.items[index]
        return modcrop(self.cache.get(item.hr, "decoded", lambda: load_image(item.hr)), self.scale)

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        """(LR uint8 hxwx3, mod-cropped HR uint8 HxWx3, name); clear error if the sizes do not match."""
        item = self.items[index]
        s = self.scale
        hr = self.load_hr(index)
        if item.lr is None:
            lr = self.cache.get(item.hr, f"bicubic_x{s}", lambda: bicubic_lr(np.asarray(hr), s))
        else:
            lr = self.cache.get(item.lr, "decoded", lambda: load_image(item.lr))
        # Re-checked on every load: a file replaced after the scan must not give misaligned patches.
        bad = pair_size_error(item, (lr.shape[1], lr.shape[0]), (hr.shape[1], hr.shape[0]), s)
        if bad:
            raise ValueError(bad)
        return lr, hr, item.name

    def __getitem__(self, index: int) -> dict:
        lr, hr, name = self.load_pair(index)
        return {"lr": to_float(lr.transpose(2, 0, 1)), "hr": to_float(hr.transpose(2, 0, 1)), "name": name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, scale={self.scale}, lr={self.lr_source})"


class PairedFolderDataset(SRImageDataset):
    """HR images in ``hr_dir`` with LR partners ``lr_dir / lr_pattern.format(stem, scale, ext)``.

    The default pattern ``"{stem}x{scale}{ext}"`` is the DIV2K/EDSR naming (``0001.png`` ->
    ``0001x4.png``). Every HR image must have its LR partner (clear error otherwise), and
    ``LR size * scale`` must equal the mod-cropped HR size (checked when an image is loaded).
    """

    def __init__(
        self,
        hr_dir: PathLike,
        lr_dir: PathLike,
        scale: int,
        lr_pattern: str = "{stem}x{scale}{ext}",
        cache: str = "memory",
        cache_dir: PathLike | None = None,
    ) -> None:
        lr_dir = Path(lr_dir).expanduser()
        if not lr_dir.is_dir():
            raise FileNotFoundError(f"LR folder not found: {lr_dir}")
        items = pair_items(list_images(hr_dir), lr_dir, int(scale), lr_pattern, require=True)
        super().__init__(items, scale, cache, cache_dir)


class HRFolderDataset(SRImageDataset):
    """HR images only (a folder and/or a list of files); LR = MATLAB bicubic of the mod-cropped HR.

    The LR image is generated on first access from the uint8 HR (bit-exact to the official LR files) and
    cached like the decoded images.
    """

    def __init__(
        self,
        hr_dir: PathLike | None = None,
        files: Sequence[PathLike] | None = None,
        scale: int = 4,
        cache: str = "memory",
        cache_dir: PathLike | None = None,
    ) -> None:
        if hr_dir is None and not files:
            raise ValueError("HRFolderDataset needs hr_dir or files")
        paths = list_images(hr_dir) if hr_dir is not None else []
        for f in files or []:
            p = Path(f).expanduser()
            if not p.is_file():
                raise FileNotFoundError(f"image file not found: {p}")
            paths.append(p)
        super().__init__([ImageItem(p.stem, p, None) for p in paths], scale, cache, cache_dir)
