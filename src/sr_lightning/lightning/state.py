"""What `SRModule` adds to a Lightning checkpoint beyond the weights: RNG states, the W&B run id, the network form.

Everything is stored as tensors, ints and strings, so checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def collect_rng_states() -> dict[str, Any]:
    """The global RNG states of Python, NumPy and torch (CPU and every CUDA device)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    states: dict[str, Any] = {
        "python": [version, list(py_state), py_gauss],
        "numpy": [
            str(kind),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(gauss),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: Mapping[str, Any]) -> None:
    """Inverse of `collect_rng_states` (missing entries are left alone)."""
    if "python" in states:
        version, py_state, py_gauss = states["python"]
        random.setstate((version, tuple(py_state), py_gauss))
    if "numpy" in states:
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def logged_wandb_run_id(loggers: list[Any]) -> str | None:
    """The id of the W&B run among `loggers` (so that a resumed run continues it), if any."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            return str(logger.version) if logger.version else None
    return None
