"""Measure a network's complexity and write it into a run directory (train, test, complexity, benchmark)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from sr_lightning.profiling import measure_complexity, write_complexity_files

log = logging.getLogger(__name__)


def write_complexity(report: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write a measured complexity report into ``out_dir`` (``complexity.md`` and ``complexity.json``); returns the
    files written."""
    written = write_complexity_files(report, out_dir)
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return written


def measure_counts(net: nn.Module, scale: int, train_net: nn.Module | None = None) -> dict[str, Any]:
    """Counts only (meta device, no runtime): params of both forms, FLOPs, activations, MACs."""
    return measure_complexity(net, int(scale), runtime=False, train_net=train_net)
