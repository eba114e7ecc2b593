"""Embedded default data: real photographs that ship inside the scikit-image package.

The files are read by path from the installed package's ``skimage/data`` folder (no network, no pooch
fetch), so ``data=sample`` trains and tests on any machine with the project's dependencies installed.
Gray images are replicated to three channels by ``load_image``. ``motorcycle_right.png`` (the stereo twin of
``motorcycle_left.png``) is deliberately left out of the held-out split; synthetic images (``color.png``,
``chessboard``, ``logo``, ...) are left out altogether.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from sr_lightning.data.datasets import HRFolderDataset

__all__ = ["SAMPLE_SPLITS", "SampleImages", "sample_data_dir", "sample_files"]

SAMPLE_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut.png",
        "coffee.png",
        "rocket.jpg",
        "motorcycle_left.png",
        "hubble_deep_field.jpg",
        "ihc.png",
        "grass.png",
        "gravel.png",
        "brick.png",
        "moon.png",
    ),
    "heldout": ("chelsea.png", "camera.png", "coins.png"),
}
_ALIASES = {"val": "heldout", "valid": "heldout", "test": "heldout"}


def sample_data_dir() -> Path:
    """The ``data`` folder of the installed scikit-image (found without importing it)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "the embedded sample data needs scikit-image (pip install scikit-image): its package ships "
            "the photographs used by data=sample"
        )
    return Path(spec.origin).parent / "data"


def sample_files(split: str) -> list[Path]:
    """Paths of the sample photographs of ``split`` ("train" or "heldout"; "val"/"test" are aliases)."""
    key = _ALIASES.get(split, split)
    if key not in SAMPLE_SPLITS:
        raise ValueError(f"unknown sample split {split!r}; choose from {sorted(SAMPLE_SPLITS) + sorted(_ALIASES)}")
    folder = sample_data_dir()
    files = [folder / name for name in SAMPLE_SPLITS[key]]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"scikit-image at {folder} lacks the sample image(s) {', '.join(missing)}; reinstall scikit-image (>= 0.21)"
        )
    return files


class SampleImages(HRFolderDataset):
    """The embedded sample photographs of ``split`` as an HR-only dataset (LR by MATLAB bicubic)."""

    def __init__(
        self,
        split: str = "train",
        scale: int = 4,
        cache: str = "memory",
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(files=sample_files(split), scale=scale, cache=cache, cache_dir=cache_dir)
        self.split = _ALIASES.get(split, split)
