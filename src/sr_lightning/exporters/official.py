"""Weights in the official EFDN / FDIWN key layout, loadable by the authors' code with ``strict=True``.

EFDN's official layout is its deploy form (``EFDN_deploy``): the network is folded first. FDIWN's official
checkpoints are weight-normalised (``weight_g`` / ``weight_v``), and a folded conv cannot be split back: FDIWN is
exported from the form the file holds, which must be the training form.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sr_lightning.archs.catalog import architecture_of
from sr_lightning.archs.forms import reparameterize_model
from sr_lightning.archs.optimize import refuse_optimized
from sr_lightning.utils.atomic import atomic_open


def export_official(net: nn.Module, path: str | Path) -> Path:
    """Save `net` (as loaded, not folded) in its network's official layout (``to_official``) as a plain state dict."""
    refuse_optimized(net, f"export_official({path})")
    arch = architecture_of(net)
    to_official = arch.to_official if arch is not None else None
    if to_official is None:
        raise ValueError(f"{type(net).__name__} has no official key layout to export to")
    reparameterize_model(net)  # EDBB-like blocks only (EFDN's official layout is deploy); weight norm stays
    sd = to_official({k: v.detach().cpu() for k, v in net.state_dict().items()})
    path = Path(path)
    with atomic_open(path, "wb", fsync=True) as f:  # a file object: a full disk says so (utils/atomic.py)
        torch.save(sd, f)
    return path
