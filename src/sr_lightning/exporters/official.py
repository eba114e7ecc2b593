"""Weights in the official EFDN / FDIWN key layout, loadable by the authors' code with ``strict=True``.

EFDN's official layout is its deploy form (``EFDN_deploy``): the network is folded first. FDIWN's official
checkpoints are weight-normalised (``weight_g`` / ``weight_v``), and a folded conv cannot be split back: FDIWN is
exported from the form the file holds, which must be the training form.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sr_lightning.archs.reparam import reparameterize_model
from sr_lightning.utils.atomic import atomic_path


def export_official(net: nn.Module, path: str | Path) -> Path:
    """Save `net` (as loaded, not folded) in its network's official layout (``to_official``) as a plain state dict."""
    to_official = getattr(type(net), "to_official", None)
    if to_official is None:
        raise ValueError(f"{type(net).__name__} has no official key layout to export to")
    reparameterize_model(net)  # EDBB-like blocks only (EFDN's official layout is deploy); weight norm stays
    sd = to_official({k: v.detach().cpu() for k, v in net.state_dict().items()})
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(sd, tmp)
    return path
