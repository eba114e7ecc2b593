"""EFDN's hyper-parameters read back from a state dict in our key naming (official files: convert them first).

The tail conv outputs ``out_channels * scale**2`` maps (pixel shuffle), which gives the scale; the head gives the
width and the input channels; the EFDB inner convs show the form (a plain ``conv2.weight`` is the deploy form,
EDBB branch keys the training form, whose branch set and expand width are read off the keys).
"""

from __future__ import annotations

from typing import Any

import torch

from sr_lightning.archs.conv3x3_detect import conv3x3_config, pixel_shuffle_trunk

TARGET = "sr_lightning.archs.efdn.EFDN"


def config_from_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """The EFDN model config (Hydra ``_target_`` form) whose state dict has these keys' shapes, or None."""
    if not {"head.weight", "tail.weight", "blocks.0.esa.reduce.weight"} <= set(sd):
        return None
    trunk = pixel_shuffle_trunk(sd)
    if trunk is None:
        return None
    num_blocks, channels, in_channels, scale = trunk
    cfg: dict[str, Any] = {
        "_target_": TARGET,
        "scale": scale,
        "in_channels": int(in_channels),
        "out_channels": int(in_channels),
        "channels": int(channels),
        "num_blocks": num_blocks,
        "esa_channels": int(sd["blocks.0.esa.reduce.weight"].shape[0]),
        # the deploy form (a plain conv2.weight) gives None; the training form an EDBB of the branches present
        "conv3x3": conv3x3_config(sd, "blocks.0.conv2.", int(channels)),
    }
    return cfg
