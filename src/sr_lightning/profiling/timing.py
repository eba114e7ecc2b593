"""Forward-pass runtime: ``warmup`` untimed passes, then ``runs`` timed ones (eval mode, ``torch.no_grad``).

On GPU each pass is timed with CUDA events around it and a synchronisation after it (the NTIRE efficient-SR
convention); on CPU with ``time.perf_counter``, and the number of intra-op threads (``torch.get_num_threads()``)
goes with the result, since CPU times scale with it.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn


def lr_input(lr_size: tuple[int, int], device: torch.device, seed: int = 0, in_channels: int = 3) -> torch.Tensor:
    """The timed input: ``1 x C x H x W`` uniform in [0, 1), drawn on the CPU from ``seed`` (same on any device)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, in_channels, *lr_size, generator=generator).to(device)


def describe_input(x: torch.Tensor, seed: int) -> str:
    """``"1x3x256x256 uniform [0, 1), seed 0"``."""
    return f"{'x'.join(str(n) for n in x.shape)} uniform [0, 1), seed {seed}"


def _time_cpu(net: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    net(x)
    return (time.perf_counter() - start) * 1e3


def _time_cuda(net: nn.Module, x: torch.Tensor) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    net(x)
    end.record()
    torch.cuda.synchronize(x.device)
    return float(start.elapsed_time(end))


def time_forward(net: nn.Module, x: torch.Tensor, runs: int = 20, warmup: int = 5) -> dict[str, Any]:
    """Mean and median milliseconds of ``runs`` forward passes of ``net`` (already on ``x``'s device, eval mode)."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    on_cuda = x.device.type == "cuda"
    timer = _time_cuda if on_cuda else _time_cpu
    with torch.no_grad():
        for _ in range(warmup):
            net(x)
        if on_cuda:
            torch.cuda.synchronize(x.device)
        times = [timer(net, x) for _ in range(runs)]
    return {
        "runtime_ms_mean": round(statistics.fmean(times), 3),
        "runtime_ms_median": round(statistics.median(times), 3),
        "runtime_runs": runs,
        "runtime_warmup": warmup,
        "runtime_device": f"cuda ({torch.cuda.get_device_name(x.device)})" if on_cuda else "cpu",
        "runtime_threads": None if on_cuda else torch.get_num_threads(),
        "runtime_timer": "CUDA events, synchronised" if on_cuda else "time.perf_counter",
    }
