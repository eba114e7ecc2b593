"""PAN's hyper-parameters read back from a state dict in our key naming (official files: convert them first).

The head gives the width and the input channels, the first upsampling step the upsampling width, the blocks their
number. The scale shows only through the number of upsampling steps: two (x4) or more (2^k, our extension) give it;
one step is x2 or x3 (the factor has no weights, the official x2 and x3 files have identical shapes), so the config
then has no ``scale`` and detection asks for ``scale=<s>`` (as for FSRCNN and VDSR).
"""

from __future__ import annotations

import re
from typing import Any

import torch

TARGET = "sr_lightning.archs.pan.PAN"


def config_from_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """The PAN model config (Hydra ``_target_`` form) of a state dict, without ``scale`` for one upsampling step."""
    if not {"head.weight", "body_conv.weight", "up.0.conv.weight", "tail.weight", "blocks.0.split_a.weight"} <= set(sd):
        return None
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    steps = {int(m.group(1)) for k in sd if (m := re.match(r"up\.(\d+)\.", k))}
    channels, in_channels = (int(n) for n in sd["head.weight"].shape[:2])
    config: dict[str, Any] = {"_target_": TARGET}
    if len(steps) > 1:
        config["scale"] = 2 ** len(steps)
    return {
        **config,
        "in_channels": in_channels,
        "out_channels": int(sd["tail.weight"].shape[0]),
        "channels": channels,
        "up_channels": int(sd["up.0.conv.weight"].shape[0]),
        "num_blocks": len(blocks),
    }
