"""What the console shows: the lines a user acts on, once per run.

`quiet_console()` is applied where a trainer is built (`sr_lightning.utils.instantiate.instantiate_trainer`) and,
through the `QuietConsole` Hydra callback, at the start of a job; never at import (importing the library changes
nothing in the process). It is idempotent, and it removes only what is listed here, by exact message:

- `LIGHTNING_NOISE`: two notices Lightning's `rank_zero_info` prints on every `Trainer(...)`, so once per run and
  six times in a six-run `benchmark`: the litlogger advertisement (printed whenever no `LitLogger` is configured)
  and ``Trainer(limit_val_batches=1.0)`` "was configured so 100% of the batches will be used" (`conf/trainer`
  states the default). Any other Lightning message (checkpoints, a ``limit_*`` that is not 1.0...) passes.
- `LIGHTNING_ONCE`: Lightning's device lines (``GPU available: False, used: False``, ``TPU available: ...``), also
  printed by every ``Trainer(...)``, are printed once per process for each distinct text: a six-run ``benchmark``
  shows them once, a sweep that changes the device shows each new one.
- `LEAFSPEC_DEPRECATION`: the ``FutureWarning`` of torch 2.13's ``torch.utils._pytree.LeafSpec``, raised from
  Lightning 2.6's own ``lightning.pytorch.utilities._pytree`` (it builds ``LeafSpec()``) whenever a step output is
  flattened. Neither this project nor its users can act on it (Lightning's code); the same warning raised from any
  other module is still shown.
- `RankZeroConsole`: in the processes of a run other than its launching one (DDP ranks 1..N-1, other nodes; see
  `sr_lightning.utils.run_lock.is_launching_process`), the console handlers pass warnings and errors only. Their
  INFO lines (``output dir:``, ``final network:``, the parameter counts) repeat rank 0's; each rank's log file
  (``<job>_ddp_rank<k>.log``) still holds all of them.

`without_native_lines` keeps lines that native code writes straight to a file descriptor off the console (kineto's
``USDT ... profiler_start`` / ``profiler_stop``, see `sr_lightning.profiling.memory`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sr_lightning.utils.run_lock import is_launching_process

__all__ = [
    "LEAFSPEC_DEPRECATION",
    "LIGHTNING_NOISE",
    "LIGHTNING_ONCE",
    "QuietConsole",
    "RankZeroConsole",
    "quiet_console",
]

#: messages of Lightning's rank-zero logger that say nothing a user can act on (matched from their start)
LIGHTNING_NOISE: tuple[re.Pattern[str], ...] = (
    re.compile(re.escape("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")),
    re.compile(r"`Trainer\(limit_(train|val|test|predict)_batches=1\.0\)` was configured so 100% of the batches "),
)
#: messages of Lightning's rank-zero logger printed once per process for each distinct text (matched from their start)
LIGHTNING_ONCE: tuple[re.Pattern[str], ...] = (re.compile(r"GPU available: "), re.compile(r"TPU available: "))
#: the loggers Lightning's `rank_zero_info` writes to (`lightning_utilities.core.rank_zero.log`, set per package)
LIGHTNING_RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
#: (message, category, module) of a deprecation warning raised inside Lightning, for `warnings.filterwarnings`
LEAFSPEC_DEPRECATION = (
    re.escape("`isinstance(treespec, LeafSpec)` is deprecated"),
    FutureWarning,
    re.escape("lightning.pytorch.utilities._pytree"),
)


class _DropLightningNoise(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.shown: set[str] = set()  # the `LIGHTNING_ONCE` texts printed so far

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(pattern.match(message) for pattern in LIGHTNING_NOISE):
            return False
        if any(pattern.match(message) for pattern in LIGHTNING_ONCE):
            if message in self.shown:
                return False
            self.shown.add(message)
        return True


class RankZeroConsole(logging.Filter):
    """A console-handler filter: everything in the launching process, warnings and errors only in the others."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or is_launching_process()


_DROP_LIGHTNING_NOISE = _DropLightningNoise()
_RANK_ZERO_CONSOLE = RankZeroConsole()


def _console_handlers() -> list[logging.Handler]:
    """The root logger's handlers that write to a terminal stream (Hydra's ``console``), not to a file."""
    return [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]


def quiet_console() -> None:
    """Drop `LIGHTNING_NOISE` and `LEAFSPEC_DEPRECATION`, print `LIGHTNING_ONCE` once, and install `RankZeroConsole`
    on the console handlers of the root logger (Hydra makes them afresh for each job, so this runs per job and per
    trainer). Idempotent."""
    for name in LIGHTNING_RANK_ZERO_LOGGERS:
        logging.getLogger(name).addFilter(_DROP_LIGHTNING_NOISE)  # addFilter adds an instance once
    message, category, module = LEAFSPEC_DEPRECATION
    warnings.filterwarnings("ignore", message=message, category=category, module=module)  # replaces its duplicate
    for handler in _console_handlers():
        handler.addFilter(_RANK_ZERO_CONSOLE)


class QuietConsole(Callback):
    """Hydra callback (``hydra.callbacks.console``): `quiet_console` when a job starts, before the task function
    logs its first line (a DDP rank runs the entry point again: its ``output dir:`` line comes before any trainer)."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        quiet_console()


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # None without a console (pythonw)
            stream.flush()


@contextmanager
def without_native_lines(pattern: re.Pattern[bytes], fd: int = 2) -> Iterator[None]:
    """Hold what is written to file descriptor ``fd`` inside the block (native code bypasses ``sys.stderr``), then
    write it back to ``fd`` without the lines that match ``pattern``. Python's own streams are flushed on both sides,
    so their text keeps its place; nothing else is lost, an exception in the block included."""
    _flush_python_streams()
    with tempfile.TemporaryFile() as held:
        saved = os.dup(fd)
        os.dup2(held.fileno(), fd)
        try:
            yield
        finally:
            _flush_python_streams()
            os.dup2(saved, fd)
            os.close(saved)
            held.seek(0)
            rest = b"".join(line for line in held.read().splitlines(keepends=True) if not pattern.match(line))
            while rest:
                rest = rest[os.write(fd, rest) :]
