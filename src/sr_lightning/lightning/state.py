"""What `SRModule` adds to a Lightning checkpoint beyond the weights: RNG states, the intra-op thread count, the W&B
run id, the network form.

Everything is stored as tensors, ints and strings, so checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from sr_lightning.process import THREAD_COUNT_VARIABLES, user_set

log = logging.getLogger(__name__)


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


def restore_intra_op_threads(saved: int) -> int:
    """Use the intra-op thread count a checkpoint was written with (``sr_threads``); returns the count in use after.

    CPU kernels split their reductions by thread, so the count is part of what makes a resumed run bitwise equal to
    an uninterrupted one. A count set in the environment (``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS``, not by
    `sr_lightning.process`'s defaults) wins: the run continues, no longer bitwise."""
    current, saved = torch.get_num_threads(), int(saved)
    if saved == current or saved < 1:
        return current
    chosen = [name for name in THREAD_COUNT_VARIABLES if user_set(name)]
    if chosen:
        log.info(
            "checkpoint was written with %d intra-op threads; %s in the environment keeps %d (not a bitwise resume)",
            saved,
            "/".join(f"{n}={os.environ[n]}" for n in chosen),
            current,
        )
        return current
    # More threads than this machine's default (a smaller machine or quota): exact, but oversubscribed.
    log.log(
        logging.WARNING if saved > current else logging.INFO,
        "resuming with the checkpoint's %d intra-op threads (default here: %d) for an exact resume; "
        "set OMP_NUM_THREADS to choose another count",
        saved,
        current,
    )
    torch.set_num_threads(saved)
    return saved


def logged_wandb_run_id(loggers: list[Any]) -> str | None:
    """The id of the W&B run among `loggers` (so that a resumed run continues it), if any."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            return str(logger.version) if logger.version else None
    return None
