"""TorchScript export (legacy: deprecated upstream in favour of `torch.export`, still what many C++ / mobile
consumers load). The deploy-form network is traced; its sizes are traced as tensor ops, so the file runs at any
input size (checked at two sizes by the export entry point and the tests)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from sr_lightning.exporters import META_KEY, export_meta
from sr_lightning.utils.atomic import atomic_open

#: the extra file holding our metadata inside the TorchScript archive
EXTRA_FILE = f"{META_KEY}.json"


def export_torchscript(net: nn.Module, path: str | Path) -> Path:
    """Trace `net` (deploy form, eval) on a probe input and save it with `export_meta` as an extra file."""
    side = max(64, int(getattr(net, "min_input_size", 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about Python ints from sizes (traced as ops)
        traced = torch.jit.trace(net, torch.rand(1, 3, side, side), check_trace=False)
    path = Path(path)
    with atomic_open(path, "wb") as f:  # a file object: a full disk says so (utils/atomic.py)
        torch.jit.save(traced, f, _extra_files={EXTRA_FILE: json.dumps(export_meta(net))})
    return path
