"""`hardware=auto`: pick the accelerator and precision from the machine (GPUs when present, else the CPU).

The selection is made of pure functions of the detected facts (number of CUDA devices, their compute
capabilities) so it is testable without a GPU; `detect_*` read the facts and the `sr_accelerator` /
`sr_precision` OmegaConf resolvers (registered by `sr_lightning.config.register_resolvers`) join the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: Native bf16 arithmetic arrived with compute capability 8.0 (Ampere). `torch.cuda.is_bf16_supported()` also says
#: True on older cards where bf16 is emulated (slow), so the decision reads the capability instead.
BF16_MIN_CAPABILITY: tuple[int, int] = (8, 0)

_GPU_ACCELERATORS = ("gpu", "cuda")


def select_accelerator(num_gpus: int) -> str:
    """`"gpu"` when at least one CUDA device is visible, `"cpu"` otherwise."""
    if num_gpus < 0:
        raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
    return "gpu" if num_gpus > 0 else "cpu"


def select_precision(accelerator: str, capabilities: Sequence[tuple[int, int]]) -> str:
    """Lightning `precision` for `accelerator` given the compute capabilities of the visible GPUs.

    On GPUs: mixed precision, `bf16-mixed` when every GPU has native bf16 (the lowest capability decides, so
    all DDP ranks agree) and `16-mixed` (fp16 with a GradScaler) otherwise. Elsewhere (CPU, other
    accelerators): `32-true`. `accelerator="auto"` counts as GPU when one is visible, as Lightning does.
    """
    accelerator = str(accelerator).lower()
    on_gpu = accelerator in _GPU_ACCELERATORS or (accelerator == "auto" and len(capabilities) > 0)
    if not on_gpu:
        return "32-true"
    if not capabilities:
        raise ValueError(f"accelerator={accelerator!r} but no CUDA device is visible")
    return "bf16-mixed" if min(tuple(c) for c in capabilities) >= BF16_MIN_CAPABILITY else "16-mixed"


def detect_num_gpus() -> int:
    """Number of visible CUDA devices (NVML-based under Lightning, so it does not initialise CUDA)."""
    return torch.cuda.device_count()


def detect_capabilities() -> list[tuple[int, int]]:
    """Compute capability `(major, minor)` of every visible CUDA device; `[]` without one.

    Reading a capability initialises CUDA in this process, which only matters for fork-based DDP
    (`ddp_fork`, notebooks); the entry points use Lightning's default subprocess launcher.
    """
    return [tuple(torch.cuda.get_device_capability(i)) for i in range(detect_num_gpus())]  # type: ignore[misc]


def auto_accelerator() -> str:
    """Resolver `${sr_accelerator:}`: the accelerator of this machine."""
    return select_accelerator(detect_num_gpus())


def auto_precision(accelerator: str = "auto") -> str:
    """Resolver `${sr_precision:<accelerator>}`: the precision for `accelerator` on this machine."""
    accelerator = str(accelerator).lower()
    # The CPU never needs the GPU facts (and must not initialise CUDA for them).
    if accelerator not in _GPU_ACCELERATORS and accelerator != "auto":
        return select_precision(accelerator, [])
    return select_precision(accelerator, detect_capabilities())
