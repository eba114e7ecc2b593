"""VDSR (Kim, Lee, Lee, CVPR 2016), re-implemented as in the EFDN paper's Table 3: 20 convolutions 3x3, 64 maps,
ReLU after all but the last, the output added to the bicubic-upsampled input (global residual learning).

``num_layers=20, channels=64`` for one (Y) channel is the papers' VDSR: 664,704 weights without biases (the EFDN
paper's Table 4 "665K"; with biases 665,921), and 664,704 MACs per output pixel, 612.6 G for a 1280x720 output.

Where the EDBB goes (EFDN paper Sec. 4.3.2, "on VDSR"): the 18 inner 3x3 convolutions (``body``, 64 -> 64). The first
and last ones (``head``: in -> 64, ``tail``: 64 -> out) stay plain convolutions: an identity branch needs in == out,
and every EDBB row of Table 3's VDSR part but one keeps the identity, so a block there would be another block than
the one the table names; EFDN itself keeps its head and tail plain. Parameter counts do not decide it: the deploy
form (every block folded) is the plain VDSR either way.

The bicubic input is computed inside the network, with MATLAB's kernel (``ops/bicubic.py``): the input is the LR
image, as for every other network here, so training data, ``upscale`` (any size, tiling) and the ONNX / TorchScript
exports need nothing VDSR-specific, and the interpolation is MATLAB ``imresize``'s (the VDSR paper's), to float
rounding, without the uint8 rounding of a bicubic image saved to disk. ``torch``'s own bicubic is Keys a = -0.75, not
MATLAB's a = -0.5: on Set5 x2 (official LR) its image scores 33.9726 dB Y-PSNR against HR, this layer's 33.6786 dB
(MATLAB's 8-bit image: 33.6741 dB), the two 47.57 dB apart (benchmarks/vdsr_bicubic_input.py).

Weights files: VDSR's tensors are the same at every scale (the paper trains one network for x2, x3 and x4), so a state
dict without our metadata shows the network but not its scale: ``weights=<file> scale=<s>`` (our files carry both).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from sr_lightning.archs.architecture import EDBB_FACTORY, Architecture
from sr_lightning.archs.conv3x3_detect import conv3x3_config
from sr_lightning.archs.rep_block import Conv3x3Factory, plain_conv3x3
from sr_lightning.ops.bicubic import MatlabBicubicUpsample

TARGET = "sr_lightning.archs.vdsr.VDSR"


class VDSR(nn.Module):
    """VDSR with the paper's depth and width as defaults.

    Keys: ``head``, ``body.{i}`` (``num_layers - 2`` convs), ``tail``; the upsampling layer has no tensors.
    """

    #: no tensor depends on the scale: weights of any scale load at any other
    upsampler_prefixes: tuple[str, ...] = ()
    min_input_size: int = 1

    def __init__(
        self,
        scale: int = 2,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: int = 64,
        num_layers: int = 20,
        conv3x3: Conv3x3Factory | None = None,
    ) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(
                f"VDSR adds its output to the upsampled input: in_channels ({in_channels}) must equal out_channels "
                f"({out_channels})"
            )
        if num_layers < 2:
            raise ValueError(f"VDSR needs num_layers >= 2 (a head and a tail conv), got {num_layers}")
        make3x3 = conv3x3 or plain_conv3x3
        self.scale = scale
        self.upsample = MatlabBicubicUpsample(scale)
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.body = nn.ModuleList(make3x3(channels, channels) for _ in range(num_layers - 2))  # EDBB: training form
        self.tail = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        # The VDSR paper's initialisation (He et al.: std sqrt(2 / fan_in)), biases zero; factory blocks keep theirs.
        for conv in [self.head, *self.body, self.tail]:
            if type(conv) is nn.Conv2d:
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upsampled = self.upsample(x)
        feat = self.act(self.head(upsampled))
        for conv in self.body:
            feat = self.act(conv(feat))
        return self.tail(feat) + upsampled  # VDSR's residual learning: the network predicts HR - bicubic


def config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """The model config (``_target_`` form) of a state dict in our key naming, from its keys and shapes; None when
    it is no VDSR. Without ``scale``: no shape shows it (the detection's fit check builds the default scale)."""
    sd = state_dict
    if not {"head.weight", "tail.weight"} <= set(sd) or any(not re.match(r"(head|body|tail)\.", k) for k in sd):
        return None
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.", k))}
    channels, in_channels = (int(n) for n in sd["head.weight"].shape[:2])
    return {
        "_target_": TARGET,
        "in_channels": in_channels,
        "out_channels": int(sd["tail.weight"].shape[0]),
        "channels": channels,
        "num_layers": len(layers) + 2,
        "conv3x3": conv3x3_config(sd, "body.0.", channels) if layers else None,
    }


ARCHITECTURE = Architecture(
    cls=VDSR,
    target=TARGET,
    config_from_state_dict=config_from_state_dict,
    training_options={"conv3x3": EDBB_FACTORY},
)
