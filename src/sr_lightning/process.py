"""Process settings of the entry points (never of the library: importing `sr_lightning` changes nothing).

Each entry module (`sr_lightning.train`, ``test``, ``upscale``, ``export``, ``complexity``, ``benchmark``) calls
`set_process_defaults()` at its very top, before anything imports torch or allocates a tensor. Every setting is a
default: a value already in the environment wins, so users override each one there.

- ``THP_MEM_ALLOC_ENABLE=1``: PyTorch's CPU allocator backs tensors of 2 MB and more with transparent huge pages. It
  reads the variable once, at torch's first allocation. A CPU training step allocates its large activations afresh
  every step; on 4 KiB pages the kernel's page faults took half the CPU time of an EFDN x4 batch-64 step on 2 cores,
  and more beside DataLoader workers (benchmarks/data_throughput.py). ``THP_MEM_ALLOC_ENABLE=0`` turns it off.
"""

from __future__ import annotations

import os

#: variable -> default value, set when the environment does not already hold the variable
PROCESS_DEFAULTS: dict[str, str] = {"THP_MEM_ALLOC_ENABLE": "1"}


def set_process_defaults() -> dict[str, str]:
    """Set each `PROCESS_DEFAULTS` variable the environment lacks; returns the ones set."""
    missing = {k: v for k, v in PROCESS_DEFAULTS.items() if k not in os.environ}
    os.environ.update(missing)
    return missing
