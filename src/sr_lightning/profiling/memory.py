"""Peak memory of one forward pass (eval mode, ``torch.no_grad``), on GPU and CPU.

- **GPU**: ``torch.cuda.max_memory_allocated`` over one forward, ``torch.cuda.reset_peak_memory_stats`` just before
  it (the NTIRE efficient-SR convention): weights, input, intermediates, output and kernel workspaces, as the caching
  allocator hands them out.
- **CPU** has no allocator statistics. The closest honest equivalent: ``torch.profiler.profile(profile_memory=True)``
  records every allocation and free of the c10 CPU allocator during the forward (what every CPU tensor and the
  kernels' workspaces, e.g. oneDNN's blocked-format buffers, are allocated from); the running sum of those events in
  time order peaks at the most bytes allocated during the forward and live at once. Weights and input, allocated
  before, are added (their storages' bytes), like the GPU figure holds them. It depends on the thread count (per
  thread workspaces). Validated against :func:`tensor_peak_bytes` (weights + input + op-output storages live at once,
  tracked by a ``TorchDispatchMode``; no workspace): with one thread the two are equal to the byte for EFDN x4 and
  FDIWN x4 (deploy, 256x256 LR, torch 2.13 CPU); with two threads the allocator peak is 11 % (EFDN) and 22 % (FDIWN)
  higher (per-thread kernel workspaces). tests/test_complexity.py checks allocator >= tensors and one conv against
  input + weight + output bytes.

torch 2.13's kineto writes ``USDT:... SyncActivityProfilerHandler.cpp:52] profiler_start`` (and ``profiler_stop``) to
file descriptor 2 at every profile: USDT is its highest log level, above ERROR, so only ``KINETO_LOG_LEVEL=6`` (a
process setting, read once; not the library's to set) would silence it. Those two lines are taken off the console
around the profile (`sr_lightning.utils.console.without_native_lines`); anything else written there is kept.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from sr_lightning.utils.console import without_native_lines

CUDA_METHOD = "GPU: torch.cuda.max_memory_allocated over one forward (weights, input, intermediates, workspaces)"
CPU_METHOD = (
    "CPU: weights + input + peak of c10 CPU-allocator bytes live during one forward "
    "(torch.profiler memory events; intermediates and kernel workspaces)"
)
#: kineto's two lines per profile (fd 2, native code), e.g. ``USDT:2026-01-01 10:00:00 123:123
#: SyncActivityProfilerHandler.cpp:52] profiler_start``
KINETO_USDT_LINE = re.compile(rb"USDT:[^\n]* SyncActivityProfilerHandler\.cpp:\d+\] profiler_(start|stop)\r?\n?\Z")


def storage_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views and shared weights counted once)."""
    seen: dict[tuple[str, int], int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen[(str(t.device), storage.data_ptr())] = storage.nbytes()
    return sum(seen.values())


def resident_bytes(net: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the weights (parameters and buffers) and the input: what is allocated before the forward."""
    return storage_bytes([*net.parameters(), *net.buffers(), x])


def peak_memory(net: nn.Module, x: torch.Tensor) -> tuple[int, str]:
    """Peak bytes of one forward of ``net`` on ``x`` (both on the same device) and how they were measured."""
    if x.device.type == "cuda":
        return _cuda_peak(net, x), CUDA_METHOD
    if x.device.type == "cpu":
        return resident_bytes(net, x) + cpu_allocator_peak(net, x), CPU_METHOD
    raise ValueError(f"peak memory is measured on CUDA or CPU, not {x.device}")


def _cuda_peak(net: nn.Module, x: torch.Tensor) -> int:
    torch.cuda.synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    with torch.no_grad():
        out = net(x)
    torch.cuda.synchronize(x.device)
    peak = torch.cuda.max_memory_allocated(x.device)
    del out
    return int(peak)


def cpu_allocator_peak(net: nn.Module, x: torch.Tensor) -> int:
    """The most bytes allocated from the CPU allocator during one forward and live at the same time.

    Memory events are ``[memory]`` records of the profiler's results, with signed byte counts (negative: a free).
    Frees of blocks allocated before profiling started are not recorded (the reporter does not know their size), so
    the running sum covers exactly the forward's own allocations."""
    with (
        without_native_lines(KINETO_USDT_LINE),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
        torch.no_grad(),
    ):
        out = net(x)
    del out
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events = sorted((e for e in events if e.device_type() == DeviceType.CPU), key=lambda e: e.start_ns())
    if not events:
        raise RuntimeError("torch.profiler recorded no CPU memory event: cannot measure the CPU peak memory")
    running = peak = 0
    for event in events:  # stable sort: events of the same nanosecond keep their recorded order
        running += event.nbytes()
        peak = max(peak, running)
    return peak


class _LiveStorages(TorchDispatchMode):
    """Tracks the storages of op outputs until they are freed (a storage keeps its Python object while the C++
    storage lives, so a weakref finalizer fires when it is freed). Storages in ``known`` (weights, input) are
    never counted: an op returning a view of them allocates nothing."""

    def __init__(self, known: list[torch.Tensor]) -> None:
        super().__init__()
        self.known = {(str(t.device), t.untyped_storage().data_ptr()) for t in known}
        self.live: dict[tuple[str, int], weakref.finalize] = {}
        self.current = 0
        self.peak = 0

    def _freed(self, key: tuple[str, int], nbytes: int) -> None:
        self.live.pop(key, None)
        self.current -= nbytes

    def _track(self, t: torch.Tensor) -> None:  # a function of its own: no local keeps the storage alive
        storage = t.untyped_storage()
        key = (str(t.device), storage.data_ptr())
        if key not in self.live and key not in self.known and storage.nbytes() > 0:
            self.live[key] = weakref.finalize(storage, self._freed, key, storage.nbytes())
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


def tensor_peak_bytes(net: nn.Module, x: torch.Tensor) -> int:
    """Weights + input + the peak of op-output storages live at once during one forward (a ``TorchDispatchMode``):
    the tensors only, no kernel workspace. A cross-check of :func:`peak_memory` (any device)."""
    tracker = _LiveStorages([*net.parameters(), *net.buffers(), x])
    with torch.no_grad(), tracker:
        out = net(x)
    del out
    return resident_bytes(net, x) + tracker.peak
