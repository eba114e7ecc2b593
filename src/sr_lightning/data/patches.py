"""Training wrapper: random aligned LR/HR patches + flips/rotations from any full-image SR dataset."""

from __future__ import annotations

import logging

from torch.utils.data import ConcatDataset, Dataset, Subset

from sr_lightning.data.sampler import item_generator
from sr_lightning.data.transforms import augment_pair, random_crop_pair
from sr_lightning.ops.pixels import to_float

__all__ = ["TrainPatches", "flatten_dataset"]

log = logging.getLogger(__name__)


def flatten_dataset(dataset: Dataset) -> list[tuple[Dataset, int]]:
    """(leaf dataset, index) for every item, looking through ``ConcatDataset`` and ``Subset``."""
    if isinstance(dataset, ConcatDataset):
        return [pair for ds in dataset.datasets for pair in flatten_dataset(ds)]
    if isinstance(dataset, Subset):
        inner = flatten_dataset(dataset.dataset)
        return [inner[i] for i in dataset.indices]
    return [(dataset, i) for i in range(len(dataset))]


def _name(ds: Dataset, i: int) -> str:
    items = getattr(ds, "items", None)
    return items[i].name if items is not None else f"#{i}"


class TrainPatches(Dataset):
    """Random ``lr_patch_size`` LR patches with their aligned ``lr_patch_size * scale`` HR patches.

    Each of the ``repeat * len(dataset)`` items picks image ``index % len(dataset)``, a uniformly random
    aligned crop and (with ``augment``) a random flip/rotation (EDSR protocol). Datasets with a
    ``load_pair`` method (all :class:`~sr_lightning.data.datasets.SRImageDataset`) are cropped on the uint8
    arrays before conversion, so only the patch is converted to float.

    Randomness: each item is drawn with its own generator seeded from ``(seed, epoch, index)``
    (`~sr_lightning.data.sampler.item_generator`), where `TrainSampler` passes ``(epoch, index)`` as the key (a
    plain integer key means epoch 0). So a patch does not depend on the process, rank or DataLoader worker that
    builds it, nor on other RNG consumers: runs are reproducible and resumable mid-epoch with any worker count.

    ``small_images``: what to do with images smaller than the patch: ``"error"`` (clear error listing them,
    checked up front from the file headers) or ``"skip"`` (leave them out, with a warning).
    """

    def __init__(
        self,
        dataset: Dataset,
        lr_patch_size: int,
        scale: int,
        augment: bool = True,
        repeat: int = 1,
        seed: int = 0,
        small_images: str = "error",
    ) -> None:
        if small_images not in ("error", "skip"):
            raise ValueError(f"small_images must be 'error' or 'skip', got {small_images!r}")
        if int(repeat) < 1 or int(lr_patch_size) < 1:
            raise ValueError(f"repeat and lr_patch_size must be >= 1, got {repeat}, {lr_patch_size}")
        self.dataset = dataset
        self.lr_patch_size = int(lr_patch_size)
        self.scale = int(scale)
        self.augment = bool(augment)
        self.repeat = int(repeat)
        self.seed = int(seed)
        self._index = self._check_sizes(flatten_dataset(dataset), small_images)

    def _check_sizes(self, index: list[tuple[Dataset, int]], policy: str) -> list[tuple[Dataset, int]]:
        hr_patch = self.lr_patch_size * self.scale
        keep, small = [], []
        for ds, i in index:
            if hasattr(ds, "hr_size"):
                h, w = ds.hr_size(i)
                if min(h, w) < hr_patch:
                    small.append((ds, i, h, w))
                    continue
            keep.append((ds, i))
        if small:
            names = [f"{_name(ds, i)} ({h}x{w})" for ds, i, h, w in small[:5]]
            msg = (
                f"{len(small)} of {len(index)} training images are smaller than the HR patch "
                f"{hr_patch}x{hr_patch} (lr_patch_size {self.lr_patch_size} x scale {self.scale}): "
                f"{', '.join(names)}{', ...' if len(small) > 5 else ''}"
            )
            if policy == "error":
                raise ValueError(msg + "; lower lr_patch_size or use small_images='skip'")
            log.warning("%s; skipping them", msg)
        if not keep:
            raise ValueError(f"no training image is at least {hr_patch}x{hr_patch} pixels")
        return keep

    def __len__(self) -> int:
        return self.repeat * len(self._index)

    @property
    def num_images(self) -> int:
        return len(self._index)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = (0, key) if isinstance(key, int) else key
        ds, i = self._index[index % len(self._index)]
        g = item_generator(self.seed, epoch, index)
        p, s = self.lr_patch_size, self.scale
        uint8 = hasattr(ds, "load_pair")
        if uint8:  # decoded HxWx3 arrays, cropped as 3xHxW views: only the patch is converted to float
            lr, hr, name = ds.load_pair(i)
            lr, hr = lr.transpose(2, 0, 1), hr.transpose(2, 0, 1)
        else:
            item = ds[i]
            lr, hr, name = item["lr"], item["hr"], item.get("name", str(i))
        # The draws from g, in order: the crop position (top, left), then the augmentation flags.
        lr_t, hr_t = random_crop_pair(lr, hr, p, s, g)
        if uint8:
            lr_t, hr_t = to_float(lr_t), to_float(hr_t)
        if self.augment:
            lr_t, hr_t = augment_pair(lr_t, hr_t, generator=g)
        return {"lr": lr_t, "hr": hr_t, "name": name}
