"""sr-lightning: Lightning + Hydra toolkit for lightweight single-image super-resolution.

`load_model(weights)` gives a ready deploy-form network for any weights file (network and scale detected);
`upscale_image(model, image, tile=..., ensemble=...)` applies it to an array or tensor.
"""

from __future__ import annotations

import os
from typing import Any

# PyTorch's CPU allocator backs tensors of 2 MB and more with transparent huge pages when THP_MEM_ALLOC_ENABLE=1. It
# reads the variable once, at torch's first allocation, so it is set here, before the entry points import torch. A
# CPU training step allocates its large activations afresh every step; on 4 KiB pages the kernel's page faults took
# half the CPU time of an EFDN x4 batch-64 step on 2 cores, and more beside DataLoader workers
# (benchmarks/data_throughput.py). THP_MEM_ALLOC_ENABLE=0 in the environment turns it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
__all__ = ["__version__", "load_model", "upscale_image"]


def __getattr__(name: str) -> Any:
    """`load_model` / `upscale_image` imported on first use (plain `import sr_lightning` stays light)."""
    if name == "load_model":
        from sr_lightning.inference.loading import load_model

        return load_model
    if name == "upscale_image":
        from sr_lightning.inference.upscaler import upscale_image

        return upscale_image
    raise AttributeError(f"module 'sr_lightning' has no attribute {name!r}")
