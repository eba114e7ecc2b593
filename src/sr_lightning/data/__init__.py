"""Data layer: SR datasets (folders, benchmarks, DIV2K/Flickr2K/DF2K, embedded samples), training patches,
decoded-image cache, the LightningDataModule and a download helper.

Names are imported lazily, so ``import sr_lightning.data`` stays cheap (no Lightning import until needed).
The download helper lives in :mod:`sr_lightning.data.download` (``python -m sr_lightning.data.download``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ImageCache": "cache",
    "ImageItem": "datasets",
    "SRImageDataset": "datasets",
    "PairedFolderDataset": "datasets",
    "HRFolderDataset": "datasets",
    "BenchmarkDataset": "benchmark",
    "available_sets": "benchmark",
    "DIV2K": "div2k",
    "Flickr2K": "div2k",
    "DF2K": "div2k",
    "SampleImages": "sample",
    "TrainPatches": "patches",
    "random_crop_pair": "transforms",
    "augment_pair": "transforms",
    "SRDataModule": "datamodule",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
