"""Benchmark test sets (Set5, Set14, B100, Urban100, Manga109) in the EDSR ``benchmark`` layout.

    <root>/<name>/HR/<stem>.png
    <root>/<name>/LR_bicubic/X<s>/<stem>x<s>.png

The official LR image is used when its file exists; otherwise the LR is generated from the HR with MATLAB
bicubic (identical to the official files, which were made that way). ``lr_source`` says which happened.
"""

from __future__ import annotations

import os
from pathlib import Path

from sr_lightning.data.datasets import SRImageDataset, list_images, pair_items

__all__ = ["BenchmarkDataset", "available_sets"]


def available_sets(root: str | os.PathLike) -> list[str]:
    """Names of the sets under ``root`` that have an ``HR`` folder (sorted); [] if root is missing."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "HR").is_dir())


class BenchmarkDataset(SRImageDataset):
    """One benchmark set ``<root>/<name>`` (EDSR layout) at ``scale``.

    Args:
        root: the folder holding the sets (e.g. ``shared/data/benchmark``).
        name: set name, e.g. ``"Set5"``.
        scale: SR factor.
        lr: ``"auto"`` (official LR file when present, else generated), ``"official"`` (every LR file must
            exist) or ``"generated"`` (always generate from HR, ignoring the LR files).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        name: str,
        scale: int,
        lr: str = "auto",
        cache: str = "memory",
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        if lr not in ("auto", "official", "generated"):
            raise ValueError(f"lr must be 'auto', 'official' or 'generated', got {lr!r}")
        root = Path(root).expanduser()
        hr_dir = root / name / "HR"
        if not hr_dir.is_dir():
            sets = available_sets(root)
            where = f"sets found under {root}: {', '.join(sets) or 'none'}" if root.is_dir() else "no such root"
            raise FileNotFoundError(f"benchmark set {name!r} not found: {hr_dir} is missing ({where})")
        scale = int(scale)
        lr_dir = None if lr == "generated" else root / name / "LR_bicubic" / f"X{scale}"
        items = pair_items(list_images(hr_dir), lr_dir, scale, "{stem}x{scale}.png", require=lr == "official")
        super().__init__(items, scale, cache, cache_dir)
        self.name = name
        self.root = root
