"""DIV2K, Flickr2K and DF2K (= DIV2K train + Flickr2K) in the layouts their archives unpack to.

    <root>/DIV2K/DIV2K_train_HR/0001.png              (0001-0800)
    <root>/DIV2K/DIV2K_valid_HR/0801.png              (0801-0900)
    <root>/DIV2K/DIV2K_{train,valid}_LR_bicubic/X4/0001x4.png
    <root>/Flickr2K/Flickr2K_HR/000001.png            (000001-002650)
    <root>/Flickr2K/Flickr2K_LR_bicubic/X4/000001x4.png

``root`` may also be the ``DIV2K`` / ``Flickr2K`` folder itself. When an LR folder is absent the LR images are
generated with MATLAB bicubic from the HR images (what the official LR files are); when it is present every
HR image must have its LR partner. ``index_range`` selects images by number, e.g. ``(1, 800)`` for training
and ``(801, 900)`` for validation, or the EDSR-style ``"801-810"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from sr_lightning.data.datasets import ImageItem, SRImageDataset, list_images, pair_items

__all__ = ["DIV2K", "Flickr2K", "DF2K", "parse_index_range"]

PathLike = str | os.PathLike
IndexRange = tuple[int, int] | Sequence[int] | str | None


def parse_index_range(index_range: IndexRange) -> tuple[int, int] | None:
    """``"801-900"``, ``(801, 900)`` or ``[801, 900]`` -> (801, 900), inclusive; None stays None."""
    if index_range is None:
        return None
    if isinstance(index_range, str):
        parts = index_range.replace(" ", "").split("-")
        if len(parts) != 2:
            raise ValueError(f"index_range must look like '801-900', got {index_range!r}")
        lo, hi = int(parts[0]), int(parts[1])
    else:
        lo, hi = (int(v) for v in index_range)
    if lo > hi or lo < 0:
        raise ValueError(f"invalid index_range {index_range!r}")
    return lo, hi


def _dataset_dir(root: PathLike, name: str, marker: str) -> Path:
    """``root/name`` in the standard layout, or ``root`` itself when it already is that folder."""
    root = Path(root).expanduser()
    if (root / marker).is_dir() or root.name == name:
        return root
    return root / name


def _select(files: list[Path], rng: tuple[int, int] | None) -> list[Path]:
    if rng is None:
        return files
    return [f for f in files if f.stem.isdigit() and rng[0] <= int(f.stem) <= rng[1]]


def _items(
    base: Path,
    hr_dirs: Sequence[str],
    lr_dirs: Sequence[str],
    scale: int,
    rng: tuple[int, int] | None,
    lr: str,
) -> list[ImageItem]:
    """Items from each HR folder that exists, paired with its LR folder (or generated when that is absent)."""
    if lr not in ("auto", "official", "generated"):
        raise ValueError(f"lr must be 'auto', 'official' or 'generated', got {lr!r}")
    items: list[ImageItem] = []
    found = False
    for hr_name, lr_name in zip(hr_dirs, lr_dirs):
        hr_dir = base / hr_name
        if not hr_dir.is_dir():
            continue
        found = True
        lr_dir = base / lr_name / f"X{scale}"
        if lr == "official" and not lr_dir.is_dir():
            raise FileNotFoundError(f"official LR folder not found: {lr_dir}")
        use_lr = lr != "generated" and lr_dir.is_dir()
        items += pair_items(
            _select(list_images(hr_dir), rng), lr_dir if use_lr else None, scale, "{stem}x{scale}.png", use_lr
        )
    if not found:
        raise FileNotFoundError(
            f"none of {', '.join(str(base / h) for h in hr_dirs)} exists; get the data with "
            f"`python -m sr_lightning.data.download <div2k-x4|flickr2k> --root {base.parent}` "
            "or point paths.data_dir (SR_DATA_DIR) at it"
        )
    if not items:
        raise FileNotFoundError(f"no images with numbers in {rng} under {base}")
    return items


class DIV2K(SRImageDataset):
    """DIV2K bicubic track. ``split``: ``"train"`` (0001-0800) or ``"valid"`` (0801-0900).

    With ``index_range`` the images are taken from both the train and valid HR folders (whichever exist)
    by number, so ``index_range=(801, 810)`` works whatever the split. ``lr``: see
    :class:`~sr_lightning.data.benchmark.BenchmarkDataset` (``"auto"``: generated if the LR folder is absent).
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        scale: int = 4,
        index_range: IndexRange = None,
        lr: str = "auto",
        cache: str = "memory",
        cache_dir: PathLike | None = None,
    ) -> None:
        if split not in ("train", "valid"):
            raise ValueError(f"DIV2K split must be 'train' or 'valid', got {split!r}")
        base = _dataset_dir(root, "DIV2K", f"DIV2K_{split}_HR")
        rng = parse_index_range(index_range)
        splits = ("train", "valid") if rng is not None else (split,)
        hr_dirs = [f"DIV2K_{s}_HR" for s in splits]
        lr_dirs = [f"DIV2K_{s}_LR_bicubic" for s in splits]
        super().__init__(_items(base, hr_dirs, lr_dirs, int(scale), rng, lr), scale, cache, cache_dir)
        self.split = split


class Flickr2K(SRImageDataset):
    """Flickr2K (2650 images, training only), bicubic track."""

    def __init__(
        self,
        root: PathLike,
        scale: int = 4,
        index_range: IndexRange = None,
        lr: str = "auto",
        cache: str = "memory",
        cache_dir: PathLike | None = None,
    ) -> None:
        base = _dataset_dir(root, "Flickr2K", "Flickr2K_HR")
        items = _items(base, ["Flickr2K_HR"], ["Flickr2K_LR_bicubic"], int(scale), parse_index_range(index_range), lr)
        super().__init__(items, scale, cache, cache_dir)


class DF2K(SRImageDataset):
    """DF2K = DIV2K training images (``div2k_range``, default 1-800) + all of Flickr2K, under ``root``."""

    def __init__(
        self,
        root: PathLike,
        scale: int = 4,
        div2k_range: IndexRange = (1, 800),
        lr: str = "auto",
        cache: str = "memory",
        cache_dir: PathLike | None = None,
    ) -> None:
        div2k = DIV2K(root, "train", scale, index_range=div2k_range, lr=lr, cache="none")
        flickr = Flickr2K(root, scale, lr=lr, cache="none")
        super().__init__(div2k.items + flickr.items, scale, cache, cache_dir)
