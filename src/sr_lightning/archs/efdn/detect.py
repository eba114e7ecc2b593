"""EFDN's hyper-parameters read back from a state dict in our key naming (official files: convert them first).

The tail conv outputs ``out_channels * scale**2`` maps (pixel shuffle), which gives the scale; the head gives the
width and the input channels; the EFDB inner convs show the form (a plain ``conv2.weight`` is the deploy form,
EDBB branch keys the training form, whose branch set and expand width are read off the keys).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from sr_lightning.archs.edbb import BRANCHES

TARGET = "sr_lightning.archs.efdn.EFDN"


def config_from_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """The EFDN model config (Hydra ``_target_`` form) whose state dict has these keys' shapes, or None."""
    if not {"head.weight", "tail.weight", "blocks.0.esa.reduce.weight"} <= set(sd):
        return None
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    channels, in_channels = sd["head.weight"].shape[:2]
    scale = math.isqrt(sd["tail.weight"].shape[0] // in_channels)
    if scale < 1 or in_channels * scale**2 != sd["tail.weight"].shape[0]:
        return None
    cfg: dict[str, Any] = {
        "_target_": TARGET,
        "scale": scale,
        "in_channels": int(in_channels),
        "out_channels": int(in_channels),
        "channels": int(channels),
        "num_blocks": len(blocks),
        "esa_channels": int(sd["blocks.0.esa.reduce.weight"].shape[0]),
        "conv3x3": None,  # the deploy form: a plain 3x3 conv
    }
    if "blocks.0.conv2.weight" not in sd:  # training form: an EDBB whose branches are the sub-modules present
        # The identity branch has no parameters, so keys cannot show it: it is assumed (the paper's seven-branch
        # block, conf/model/efdn.yaml). Our own files carry their model config, which decides instead.
        branches = [b for b in BRANCHES if b == "identity" or any(k.startswith(f"blocks.0.conv2.{b}.") for k in sd)]
        expand = sd.get("blocks.0.conv2.expand.conv1x1.weight")
        cfg["conv3x3"] = {
            "_target_": "sr_lightning.archs.edbb.make_edbb",
            "_partial_": True,
            "branches": branches,
            "expand_ratio": float(expand.shape[0] / channels) if expand is not None else 2.0,
            "mode": "online",
        }
    return cfg
