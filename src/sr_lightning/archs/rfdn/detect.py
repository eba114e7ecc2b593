"""RFDN's hyper-parameters read back from a state dict in our key naming (official files: convert them first).

The tail conv outputs ``out_channels * scale**2`` maps (pixel shuffle), which gives the scale; the head the width
and the input channels; the distillation 1x1 convs the distilled width, ESA's reduce conv its width; the SRB convs
show the form (a plain ``srb.0.weight`` is the deploy form, block branch keys the training form).
"""

from __future__ import annotations

from typing import Any

import torch

from sr_lightning.archs.conv3x3_detect import conv3x3_config, pixel_shuffle_trunk

TARGET = "sr_lightning.archs.rfdn.RFDN"


def config_from_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """The RFDN model config (Hydra ``_target_`` form) whose state dict has these keys' shapes, or None."""
    needed = {
        "head.weight",
        "tail.weight",
        "body_conv.weight",
        "blocks.0.distill.0.weight",
        "blocks.0.esa.reduce.weight",
    }
    if not needed <= set(sd):
        return None
    trunk = pixel_shuffle_trunk(sd)
    if trunk is None:
        return None
    num_blocks, channels, in_channels, scale = trunk
    return {
        "_target_": TARGET,
        "scale": scale,
        "in_channels": in_channels,
        "out_channels": in_channels,
        "channels": channels,
        "num_blocks": num_blocks,
        "distilled_channels": int(sd["blocks.0.distill.0.weight"].shape[0]),
        "esa_channels": int(sd["blocks.0.esa.reduce.weight"].shape[0]),
        # the deploy form (a plain srb.0.weight) gives None; the training form a block of the branches present
        "conv3x3": conv3x3_config(sd, "blocks.0.srb.0.", channels),
    }
