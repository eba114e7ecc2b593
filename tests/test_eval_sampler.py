"""EvalSampler: evaluation split across ranks without padding, every image exactly once (and the datamodule uses it)."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler, TensorDataset

from sr_lightning.data.datamodule import SRDataModule
from sr_lightning.data.sampler import EvalSampler


def _split(n: int, world: int) -> list[list[int]]:
    return [list(EvalSampler(range(n), num_replicas=world, rank=r)) for r in range(world)]


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("n", [7, 14, 19, 100])
def test_every_index_exactly_once_without_padding(n, world):
    parts = _split(n, world)
    lens = [len(EvalSampler(range(n), num_replicas=world, rank=r)) for r in range(world)]
    assert sum(lens) == n  # no padding: the lengths add up to the data set
    assert lens == [len(p) for p in parts]  # __len__ is what __iter__ yields (Lightning counts batches with it)
    assert sorted(i for p in parts for i in p) == list(range(n))  # disjoint and complete
    assert max(lens) - min(lens) <= 1 and min(lens) >= 1
    assert all(p == sorted(p) for p in parts)  # a fixed order: the same split at every validation
    if n % world:
        # torch's DistributedSampler pads here (repeats images), which is what EvalSampler exists to avoid
        padded = [list(DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=False)) for r in range(world)]
        assert sum(len(p) for p in padded) > n


def test_fewer_items_than_ranks_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        EvalSampler(range(2), num_replicas=3, rank=0)
    assert _split(0, 3) == [[], [], []]


def test_is_a_distributed_sampler():
    # Lightning replaces a DataLoader's sampler under DDP unless it is a DistributedSampler (its injected one pads).
    assert isinstance(EvalSampler(range(5), num_replicas=2, rank=1), DistributedSampler)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, n: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        dm = SRDataModule(val=TensorDataset(torch.arange(n)), num_workers=0)
        loader = dm.val_dataloader()
        seen = [int(batch[0]) for (batch,) in loader]
        torch.save({"sampler": type(loader.sampler).__name__, "seen": seen}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_datamodule_eval_loader_splits_across_processes(tmp_path):
    """Two gloo processes: the validation loader reads rank and world from the process group; 5 images -> 3 + 2."""
    n, world = 5, 2
    mp.spawn(_worker, args=(world, _free_port(), n, str(tmp_path)), nprocs=world, join=True)
    res = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    assert [r["sampler"] for r in res] == ["EvalSampler"] * world
    assert [r["seen"] for r in res] == [[0, 2, 4], [1, 3]]
