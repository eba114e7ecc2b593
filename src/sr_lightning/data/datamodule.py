"""LightningDataModule: training patches from any image datasets, full-image validation and test sets."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from sr_lightning.data.benchmark import BenchmarkDataset, available_sets
from sr_lightning.data.checks import ON_BAD_IMAGE, apply_policy, find_bad_images
from sr_lightning.data.patches import TrainPatches
from sr_lightning.data.sampler import EvalSampler, TrainSampler

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
        optional_test_sets: more benchmark set names, tested when present under ``benchmark_dir`` and skipped with a
            log line when not (e.g. B100 and Urban100 beside Set5 and Set14 in the Table-3 ablation).
        scale: SR factor; every dataset with a ``scale`` attribute must agree.
        lr_patch_size, batch_size, augment, repeat: training patch options (see :class:`TrainPatches`).
        num_workers, pin_memory: DataLoader options (workers are persistent when ``num_workers > 0``;
            memory is pinned only when CUDA is available).
        seed: seeds the training loader's shuffling and the patch sampling.
        small_images: ``"error"`` or ``"skip"`` training images smaller than the HR patch.
        on_bad_image: training images that cannot be used (truncated, corrupt, unsupported mode, LR/HR sizes that
            do not match the scale): ``"error"`` (fail at setup, before any step, listing every bad file) or
            ``"skip"`` (warn with the files and their count, train on the rest). Every file is fully decoded at
            setup (in parallel, cached: :mod:`sr_lightning.data.checks`); bad validation and test images, and
            whole images smaller than the network's ``min_input_size``, are always an error.
        cache, cache_dir: decoded-image cache of the benchmark sets (see :mod:`sr_lightning.data.cache`).
    """

    def __init__(
        self,
        train: Dataset | Sequence[Dataset] | None = None,
        val: Dataset | None = None,
        test: Mapping[str, Dataset] | None = None,
        benchmark_dir: str | os.PathLike | None = None,
        test_sets: Sequence[str] = (),
        optional_test_sets: Sequence[str] = (),
        scale: int = 4,
        lr_patch_size: int = 48,
        batch_size: int = 16,
        augment: bool = True,
        repeat: int = 1,
        num_workers: int = 2,
        pin_memory: bool = False,
        seed: int = 0,
        small_images: str = "error",
        on_bad_image: str = "error",
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
        if on_bad_image not in ON_BAD_IMAGE:
            raise ValueError(f"on_bad_image must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}")
        self.on_bad_image = on_bad_image
        self._checked: set[str] = set()  # roles ("train", "val", "test[<name>]") whose files were checked
        self._skip_train: set[int] = set()  # training positions left out by on_bad_image=skip
        self.train_sets = _as_list(train)
        self.val_set = val
        self.benchmark_dir = Path(benchmark_dir).expanduser() if benchmark_dir else None
        self.test_datasets: dict[str, Dataset] = {str(k): v for k, v in (test or {}).items()}
        self.skipped_test_sets: list[str] = []
        present = [
            str(n)
            for n in optional_test_sets or ()
            if self.benchmark_dir and (self.benchmark_dir / str(n) / "HR").is_dir()
        ]
        if len(present) < len(optional_test_sets or ()):
            absent = sorted(set(map(str, optional_test_sets)) - set(present))
            log.info("optional test sets not under %s, not tested: %s", self.benchmark_dir, ", ".join(absent))
        for name in [str(n) for n in test_sets or ()] + [n for n in present if n not in map(str, test_sets or ())]:
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
        self._resume_position: tuple[int, int] | None = None  # (epoch, batches) from a checkpoint

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

    def _roles(self, stage: str | None) -> dict[str, Dataset]:
        """The datasets ``stage`` uses, by role. Fitting includes the test sets: fail before training, not after."""
        roles: dict[str, Dataset] = {}
        if stage in (None, "fit") and self.train_sets and self.train_dataset is None:
            roles["train"] = self.train_sets[0] if len(self.train_sets) == 1 else ConcatDataset(self.train_sets)
        if stage in (None, "fit", "validate") and self.val_set is not None:
            roles["val"] = self.val_set
        if stage in (None, "fit", "test"):
            roles.update({f"test[{k}]": v for k, v in self.test_datasets.items()})
        return roles

    def _network_minimum(self) -> tuple[str, int]:
        """(name, ``min_input_size``) of the attached module's network; ("the network", 1) without a trainer."""
        module = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        net = getattr(module, "net", None)
        if net is None:
            return "the network", 1
        return type(net).__name__, int(getattr(net, "min_input_size", 1))

    def prepare_data(self) -> None:
        """Decode-check every file once per node (Lightning calls this on one process before ``setup``), so that
        the ``setup`` of every DDP rank reads the check cache instead of decoding all files again."""
        find_bad_images(self._roles(None))

    def _check_data(self, stage: str | None) -> None:
        """Fail (or skip bad training images) before any step: see ``on_bad_image``."""
        roles = {r: d for r, d in self._roles(stage).items() if r not in self._checked}
        if not roles:
            return
        net, minimum = self._network_minimum()
        if "train" in roles and self.lr_patch_size < minimum:
            raise ValueError(
                f"LR patch too small: lr_patch_size {self.lr_patch_size} is smaller than {net}'s minimum input of "
                f"{minimum}x{minimum} pixels ({net}.min_input_size); set stage.lr_patch_size >= {minimum}"
            )
        bad = find_bad_images(roles, {r: minimum for r in roles if r != "train"}, net)
        skip = apply_policy(bad, self.on_bad_image, {r: len(d) for r, d in roles.items()})
        if "train" in roles:
            self._skip_train = skip
        self._checked.update(roles)

    def setup(self, stage: str | None = None) -> None:
        self._check_data(stage)
        if stage in (None, "fit") and self.train_sets and self.train_dataset is None:
            data = self.train_sets[0] if len(self.train_sets) == 1 else ConcatDataset(self.train_sets)
            if self._skip_train:
                data = Subset(data, [j for j in range(len(data)) if j not in self._skip_train])
            self.train_dataset = TrainPatches(
                data,
                self.lr_patch_size,
                self.scale,
                augment=self.augment,
                repeat=self.repeat,
                seed=self.seed,
                small_images=self.small_images,
            )

    def _loader(
        self, dataset: Dataset, batch_size: int, cls: type[DataLoader] = DataLoader, **kwargs: object
    ) -> DataLoader:
        # Workers run one intra-op thread: torch's worker loop calls torch.set_num_threads(1) before any work (and
        # before a worker_init_fn), so no worker starts an OpenMP pool of its own (tests/test_threads.py).
        return cls(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )

    def per_device_batch_size(self, world: int | None = None) -> int:
        """`batch_size` is the global batch of the recipe, split evenly across the ``world`` processes of the run
        (default: the attached trainer's). The learning rate is the recipe's: the global batch does not change."""
        if world is None:
            world = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world:
            raise ValueError(
                f"batch_size {self.batch_size} (the global batch of the recipe) does not split evenly across "
                f"{world} processes: choose a multiple of {world} (stage.batch_size) or another trainer.devices"
            )
        return self.batch_size // world

    def train_dataloader(self) -> DataLoader:
        if not self.train_sets:
            raise RuntimeError("this datamodule has no training data (train=None), e.g. the benchmark config")
        self.setup("fit")
        per_device = self.per_device_batch_size()
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = TrainSampler(self.train_dataset, world, rank, self.seed, per_device)
        if self._resume_position is not None:
            sampler.resume_at(*self._resume_position)
            self._resume_position = None
        log.info("global batch %d = %d process(es) x %d per device", self.batch_size, world, per_device)
        return self._loader(self.train_dataset, per_device, ResumableDataLoader, sampler=sampler, drop_last=True)

    # -- exact resume: the position in the training data, saved in checkpoints by Lightning ---------------------------
    def state_dict(self) -> dict[str, int]:
        """Epoch and batches consumed in it (the data order is a function of the seed and the epoch)."""
        trainer = self.trainer
        if trainer is None or not self.train_sets:
            return {}
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": int(trainer.current_epoch), "batches": int(batches), "seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if "epoch" in state_dict:
            if state_dict.get("seed", self.seed) != self.seed:
                log.warning("resuming with data seed %d, the checkpoint used %d", self.seed, state_dict["seed"])
            self._resume_position = (int(state_dict["epoch"]), int(state_dict["batches"]))

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        """Whole images, batch size 1. Under DDP every image is scored exactly once: Lightning's default
        DistributedSampler would pad the last ranks with repeated images and bias per-image averages."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self._loader(dataset, 1, shuffle=False)
        return self._loader(dataset, 1, sampler=EvalSampler(dataset))

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(ds) for ds in self.test_datasets.values()]


class ResumableDataLoader(DataLoader):
    """The training DataLoader, marked resumable for Lightning: the position is restored by
    `SRDataModule.load_state_dict` through `TrainSampler.resume_at`, so this loader keeps no state of its own."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Nothing to load: see `SRDataModule.load_state_dict`."""
