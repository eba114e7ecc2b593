"""The training sampler: one shuffled order per epoch, split across ranks, resumable mid-epoch.

Every item is yielded as ``(epoch, index)``, so that `TrainPatches` derives the item's crop and flip from
``(seed, epoch, index)`` alone (`item_generator`). Two ranks never share an ``(epoch, index)`` (the order is split
between them), so their crops differ even where they draw the same image; and the random stream of an item does not
depend on which DataLoader worker builds it, so a run resumed mid-epoch, with any number of workers, sees exactly
the patches the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import DistributedSampler

__all__ = ["EvalSampler", "TrainSampler", "item_generator"]


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A torch generator seeded from ``(seed, epoch, index)`` through NumPy's SeedSequence hash (well mixed: nearby
    keys give unrelated streams)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


class TrainSampler(DistributedSampler):
    """`DistributedSampler` (shuffled, ``drop_last``) that yields ``(epoch, index)`` and can skip batches once.

    Args:
        dataset: the training dataset.
        num_replicas, rank: the process group (1 and 0 for a single process).
        seed: the shuffle seed (the order of epoch ``e`` is a function of ``seed`` and ``e`` only).
        batch_size: the per-process batch size, for `resume_at`.
    Lightning calls `set_epoch` at every epoch start (it does for any sampler that has it).
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int, seed: int, batch_size: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed), drop_last=True)
        self.batch_size = int(batch_size)
        self._skip: tuple[int, int] | None = None  # (epoch, items) to skip once

    def resume_at(self, epoch: int, batches: int) -> None:
        """Start epoch ``epoch`` after its first ``batches`` batches (once), as after a mid-epoch checkpoint."""
        self.set_epoch(epoch)
        self._skip = (int(epoch), int(batches) * self.batch_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        indices = list(super().__iter__())
        if self._skip is not None and self._skip[0] == self.epoch:
            indices = indices[self._skip[1] :]
        self._skip = None
        epoch = self.epoch
        return iter([(epoch, i) for i in indices])


class EvalSampler(DistributedSampler):
    """Evaluation split across ranks without padding: rank ``r`` of ``R`` gets items ``r, r + R, r + 2R, ...`` in
    order, so every item is scored exactly once and the per-image means are not biased by repeated images (torch's
    `DistributedSampler` pads the last ranks with repeats).

    The ranks then run different numbers of batches (at most one apart). Like Lightning's private
    ``UnrepeatedDistributedSampler`` (which this replaces: a private module can change in any release), every rank
    must get at least one item, so that no rank skips the DDP forward the others run. A `DistributedSampler`
    subclass, so Lightning keeps it instead of injecting its own.
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        total = len(dataset)
        if 0 < total < self.num_replicas:
            raise ValueError(
                f"evaluating {total} images on {self.num_replicas} processes: every process needs at least one; "
                "use fewer devices or a larger evaluation set"
            )
        self.total_size = total
        self.num_samples = len(range(self.rank, total, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))
