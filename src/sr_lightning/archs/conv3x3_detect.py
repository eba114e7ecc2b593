"""Shapes the detectors share: the ``conv3x3`` factory of a network read back from a state dict (the plain conv or an
EDBB, and its branches), and the trunk of a pixel-shuffle network (`pixel_shuffle_trunk`).

For networks that take a ``conv3x3`` factory (EFDN, FSRCNN, VDSR: their ``config_from_state_dict``). A plain
``<prefix>weight`` is the deploy form; otherwise the block is an EDBB whose branch set is the sub-modules present.
The identity branch has no tensors, so keys cannot show it: it is assumed (the paper's seven-branch block, the
packaged model configs' default). Our own files carry their model config, which decides instead.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from sr_lightning.archs.edbb import BRANCHES


def conv3x3_config(state_dict: dict[str, torch.Tensor], prefix: str, out_channels: int) -> dict[str, Any] | None:
    """The ``conv3x3`` config (Hydra ``_target_`` form) of the block whose keys start with ``prefix``
    (e.g. ``"mapping.0."``): None for a plain conv, else a ``make_edbb`` partial with the branches found."""
    if f"{prefix}weight" in state_dict:
        return None
    branches = [b for b in BRANCHES if b == "identity" or any(k.startswith(f"{prefix}{b}.") for k in state_dict)]
    expand = state_dict.get(f"{prefix}expand.conv1x1.weight")
    return {
        "_target_": "sr_lightning.archs.edbb.make_edbb",
        "_partial_": True,
        "branches": branches,
        "expand_ratio": float(expand.shape[0] / out_channels) if expand is not None else 2.0,
        "mode": "online",
    }


def pixel_shuffle_trunk(state_dict: dict[str, torch.Tensor]) -> tuple[int, int, int, int] | None:
    """(blocks, channels, in_channels, scale) of a ``head`` conv -> ``blocks.{i}`` -> ``tail`` conv + pixel shuffle
    network (EFDN, IMDN, RFDN): the tail outputs ``in_channels * scale**2`` maps. None when the shapes don't fit."""
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k))}
    channels, in_channels = (int(n) for n in state_dict["head.weight"].shape[:2])
    tail = int(state_dict["tail.weight"].shape[0])
    scale = math.isqrt(tail // in_channels)
    if scale < 1 or in_channels * scale**2 != tail:
        return None
    return len(blocks), channels, in_channels, scale
