"""IMDN's hyper-parameters read back from a state dict in our key naming (official files: convert them first).

The tail conv outputs ``out_channels * scale**2`` maps (pixel shuffle), which gives the scale; the head gives the
width and the input channels; the last distillation conv (``conv4``) the distilled channels, the CCA its reduction;
the IMDB 3x3 convs show the form (a plain ``conv1.weight`` is the deploy form, block branch keys the training form).
"""

from __future__ import annotations

from typing import Any

import torch

from sr_lightning.archs.conv3x3_detect import conv3x3_config, pixel_shuffle_trunk

TARGET = "sr_lightning.archs.imdn.IMDN"


def _out_channels(sd: dict[str, torch.Tensor], prefix: str) -> int | None:
    """Output channels of the conv or block at ``prefix``: its weight's, or (training form) a branch's output bias'."""
    branches = ("conv3x3", "conv1x1", "sobel_x", "sobel_y", "laplacian", "avgpool", "expand.conv3x3")
    for key in (f"{prefix}weight", *(f"{prefix}{b}.bias" for b in branches)):
        if key in sd:
            return int(sd[key].shape[0])
    return None


def config_from_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """The IMDN model config (Hydra ``_target_`` form) whose state dict has these keys' shapes, or None."""
    if not {"head.weight", "tail.weight", "body_conv.weight", "blocks.0.cca.reduce.weight"} <= set(sd):
        return None
    trunk, distilled = pixel_shuffle_trunk(sd), _out_channels(sd, "blocks.0.conv4.")
    if trunk is None or distilled is None:
        return None
    num_blocks, channels, in_channels, scale = trunk
    return {
        "_target_": TARGET,
        "scale": scale,
        "in_channels": in_channels,
        "out_channels": in_channels,
        "channels": channels,
        "num_blocks": num_blocks,
        "distilled_channels": distilled,
        "cca_reduction": max(1, 4 * distilled // int(sd["blocks.0.cca.reduce.weight"].shape[0])),
        # the deploy form (a plain conv1.weight) gives None; the training form a block of the branches present
        "conv3x3": conv3x3_config(sd, "blocks.0.conv1.", channels),
    }
