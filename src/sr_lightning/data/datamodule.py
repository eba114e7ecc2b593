"""LightningDataModule: training patches from any image datasets, full-image validation and test sets."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from sr_lightning.data.benchmark import BenchmarkDataset, available_sets
from sr_lightning.data.patches import TrainPatches

__all__ = ["SRDataModule"]

log = logging.getLogger(__name__)


def _as_list(train: Dataset | Sequence[Dataset] | None) -> list[Dataset]:
    if train is None:
        return []
    if isinstance(train, Dataset):
        return [train]
    return list(train)


class SRDataModule(L.LightningDataModule):
    """Super-resolution data: random patches for training, whole images (batch size 1) for val and test.

    Args:
        train: one dataset or a list of them (concatenated), wrapped in :class:`TrainPatches`.
        val: full-image validation dataset (or None: no validation).
        test: extra named test datasets ``{name: dataset}``; they come first in ``test_set_names``.
        benchmark_dir: folder of benchmark sets in the EDSR layout (``<dir>/<Set>/HR``, ``LR_bicubic``).
        test_sets: names of benchmark sets under ``benchmark_dir`` to test on. If ``benchmark_dir`` is None
            or does not exist they are skipped with a warning (a machine without the shared data still runs);
            if it exists, a missing set is an error listing the sets that do exist.
        scale: SR factor; every dataset with a ``scale`` attribute must agree.
        lr_patch_size, batch_size, augment, repeat: training patch options (see :class:`TrainPatches`).
        num_workers, pin_memory: DataLoader options (workers are persistent when ``num_workers > 0``;
            memory is pinned only when CUDA is available).
        seed: seeds the training loader's shuffling and the patch sampling.
        small_images: ``"error"`` or ``"skip"`` training images smaller than the HR patch.
        cache, cache_dir: decoded-image cache of the benchmark sets (see :mod:`sr_lightning.data.cache`).
    """

    def __init__(
        self,
        train: Dataset | Sequence[Dataset] | None = None,
        val: Dataset | None = None,
        test: Mapping[str, Dataset] | None = None,
        benchmark_dir: str | os.PathLike | None = None,
        test_sets: Sequence[str] = (),
        scale: int = 4,
        lr_patch_size: int = 48,
        batch_size: int = 16,
        augment: bool = True,
        repeat: int = 1,
        num_workers: int = 2,
        pin_memory: bool = False,
        seed: int = 0,
        small_images: str = "error",
        cache: str = "memory",
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        self.scale = int(scale)
        self.lr_patch_size = int(lr_patch_size)
        self.batch_size = int(batch_size)
        self.augment = bool(augment)
        self.repeat = int(repeat)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.seed = int(seed)
        self.small_images = small_images
        self.train_sets = _as_list(train)
        self.val_set = val
        self.benchmark_dir = Path(benchmark_dir).expanduser() if benchmark_dir else None
        self.test_datasets: dict[str, Dataset] = {str(k): v for k, v in (test or {}).items()}
        self.skipped_test_sets: list[str] = []
        for name in [str(n) for n in test_sets or ()]:
            if name in self.test_datasets:
                raise ValueError(f"test set {name!r} given twice (in test and in test_sets)")
            ds = self._benchmark_set(name, cache, cache_dir)
            if ds is None:
                self.skipped_test_sets.append(name)
            else:
                self.test_datasets[name] = ds
        if self.skipped_test_sets:
            log.warning(
                "benchmark_dir %s not found: skipping test sets %s (set paths.benchmark_dir / SR_SHARED_DIR)",
                self.benchmark_dir,
                ", ".join(self.skipped_test_sets),
            )
        for where, ds in (
            [("train", d) for d in self.train_sets]
            + [("val", self.val_set)]
            + [(f"test[{k}]", v) for k, v in self.test_datasets.items()]
        ):
            ds_scale = getattr(ds, "scale", None)
            if ds_scale is not None and int(ds_scale) != self.scale:
                raise ValueError(f"{where} dataset {ds!r} has scale {ds_scale}, the datamodule has {self.scale}")
        self.train_dataset: TrainPatches | None = None

    def _benchmark_set(self, name: str, cache: str, cache_dir: str | os.PathLike | None) -> Dataset | None:
        root = self.benchmark_dir
        if root is None or not root.is_dir():
            return None
        if not (root / name / "HR").is_dir():
            raise FileNotFoundError(
                f"test set {name!r} not found under benchmark_dir {root}; "
                f"sets there: {', '.join(available_sets(root)) or 'none'}"
            )
        return BenchmarkDataset(root, name, self.scale, cache=cache, cache_dir=cache_dir)

    @property
    def test_set_names(self) -> list[str]:
        """Test set names in :meth:`test_dataloader` order (``test`` first, then ``test_sets``)."""
        return list(self.test_datasets)

    def lr_source(self, name: str) -> str:
        """How test set ``name`` got its LR images: "official", "generated", "mixed" or "unknown"."""
        if name not in self.test_datasets:
            raise KeyError(f"no test set {name!r}; test sets: {self.test_set_names}")
        return str(getattr(self.test_datasets[name], "lr_source", "unknown"))

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_sets and self.train_dataset is None:
            data = self.train_sets[0] if len(self.train_sets) == 1 else ConcatDataset(self.train_sets)
            self.train_dataset = TrainPatches(
                data,
                self.lr_patch_size,
                self.scale,
                augment=self.augment,
                repeat=self.repeat,
                seed=self.seed,
                small_images=self.small_images,
            )

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
        )

    def train_dataloader(self) -> DataLoader:
        if not self.train_sets:
            raise RuntimeError("this datamodule has no training data (train=None), e.g. the benchmark config")
        self.setup("fit")
        return self._loader(self.train_dataset, self.batch_size, shuffle=True)

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        """Whole images, batch size 1. Under DDP every image is scored exactly once: Lightning's default
        DistributedSampler would pad the last ranks with repeated images and bias per-image averages."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self._loader(dataset, 1, shuffle=False)
        sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=1,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(ds) for ds in self.test_datasets.values()]
