"""FSRCNN (Dong, Loy, Tang, ECCV 2016), re-implemented without BN as in the EFDN paper's Table 3.

Feature extraction conv 5x5 (d maps) -> shrinking conv 1x1 (s maps) -> m mapping convs 3x3 (s -> s) -> expanding
conv 1x1 (d maps), each followed by a per-channel PReLU (Caffe's PReLU default, which the official FSRCNN models
use) -> a 9x9 deconvolution with stride ``scale`` (the post-upsampling layer). FSRCNN(56, 12, 4) is the paper's
model: 12,464 weights for one (Y) channel, biases and PReLU slopes not counted (the FSRCNN and EFDN papers' "12K").

Where the EDBB goes (EFDN paper Sec. 4.3.2, "on FSRCNN"): the block is a re-parameterizable 3x3 convolution, and
the m mapping layers are FSRCNN's only 3x3 convolutions (the others are 5x5, 1x1 and the 9x9 deconvolution). They
map s -> s channels, so all seven EDBB branches, identity included, apply. ``conv3x3`` builds them (factory(in, out),
None: plain convs); the deploy form (every block folded) is the plain FSRCNN, whatever the block.

Input/output: channels in [0, 1] (RGB by default; ``in_channels=out_channels=1`` is the papers' Y-channel model).
Weights files: every tensor has the same shape at every scale (the scale is the deconvolution's stride), so a state
dict without our metadata shows the network but not its scale: ``weights=<file> scale=<s>`` (our files carry both).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn

from sr_lightning.archs.architecture import EDBB_FACTORY, Architecture
from sr_lightning.archs.conv3x3_detect import conv3x3_config
from sr_lightning.archs.rep_block import Conv3x3Factory, plain_conv3x3

TARGET = "sr_lightning.archs.fsrcnn.FSRCNN"
DECONV_KERNEL = 9


def deconv_padding(scale: int, kernel: int = DECONV_KERNEL) -> tuple[int, int]:
    """(padding, output_padding) giving a ``scale * H`` output: ``(H - 1) * s - 2p + k + op = s * H``, so
    ``2p - op = k - s``, with the smallest p >= 0 (and 0 <= op < s)."""
    padding = max(0, math.ceil((kernel - scale) / 2))
    return padding, 2 * padding - (kernel - scale)


class FSRCNN(nn.Module):
    """FSRCNN(d=feature_channels, s=shrink_channels, m=mapping_layers); defaults: the paper's FSRCNN(56, 12, 4).

    Keys: ``feature``, ``shrink``, ``mapping.{i}``, ``expand`` (convs), ``{feature,shrink,expand}_act``,
    ``mapping_act.{i}`` (PReLUs), ``deconv``.
    """

    #: The FSRCNN paper's transfer between scales fine-tunes the deconvolution only: the one scale-dependent layer.
    #: Its shape is the same at every stride, so `init_from` keeps all weights, as that transfer starts from.
    upsampler_prefixes: tuple[str, ...] = ("deconv",)
    min_input_size: int = 1

    def __init__(
        self,
        scale: int = 2,
        in_channels: int = 3,
        out_channels: int = 3,
        feature_channels: int = 56,
        shrink_channels: int = 12,
        mapping_layers: int = 4,
        conv3x3: Conv3x3Factory | None = None,
    ) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f"FSRCNN needs a positive integer scale, got {scale}")
        make3x3 = conv3x3 or plain_conv3x3
        d, s = feature_channels, shrink_channels
        self.scale = scale
        self.feature = nn.Conv2d(in_channels, d, 5, padding=2)
        self.feature_act = nn.PReLU(d)
        self.shrink = nn.Conv2d(d, s, 1)
        self.shrink_act = nn.PReLU(s)
        self.mapping = nn.ModuleList(make3x3(s, s) for _ in range(mapping_layers))  # EDBB in the training form
        self.mapping_act = nn.ModuleList(nn.PReLU(s) for _ in range(mapping_layers))
        self.expand = nn.Conv2d(s, d, 1)
        self.expand_act = nn.PReLU(d)
        padding, output_padding = deconv_padding(scale)
        self.deconv = nn.ConvTranspose2d(
            d, out_channels, DECONV_KERNEL, stride=scale, padding=padding, output_padding=output_padding
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # As the FSRCNN paper trains it: convolutions with He ("msra") weights, std sqrt(2 / fan_in), the
        # deconvolution from N(0, 0.001^2), biases zero. Blocks built by a `conv3x3` factory keep their own init.
        for conv in [self.feature, self.shrink, self.expand, *self.mapping]:
            if type(conv) is nn.Conv2d:
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                nn.init.zeros_(conv.bias)
        nn.init.normal_(self.deconv.weight, std=1e-3)
        nn.init.zeros_(self.deconv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shrink_act(self.shrink(self.feature_act(self.feature(x))))
        for conv, act in zip(self.mapping, self.mapping_act):
            x = act(conv(x))
        # With an even scale the deconvolution's output grid is offset by half an HR pixel from the LR pixel centres
        # (no integer padding centres a 9-tap kernel on an even stride; above x9 the padding cannot go negative and
        # the offset grows); the learnt kernel absorbs it.
        return self.deconv(self.expand_act(self.expand(x)))


def config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """The model config (``_target_`` form) of a state dict in our key naming, from its keys and shapes; None when
    it is no FSRCNN. Without ``scale``: no shape shows it (the detection's fit check builds the default scale)."""
    sd = state_dict
    if not {"feature.weight", "shrink.weight", "expand.weight", "deconv.weight"} <= set(sd):
        return None
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"mapping_act\.(\d+)\.", k))}
    shrink = int(sd["shrink.weight"].shape[0])
    return {
        "_target_": TARGET,
        "in_channels": int(sd["feature.weight"].shape[1]),
        "out_channels": int(sd["deconv.weight"].shape[1]),
        "feature_channels": int(sd["feature.weight"].shape[0]),
        "shrink_channels": shrink,
        "mapping_layers": len(layers),
        "conv3x3": conv3x3_config(sd, "mapping.0.", shrink) if layers else None,
    }


ARCHITECTURE = Architecture(
    cls=FSRCNN,
    target=TARGET,
    config_from_state_dict=config_from_state_dict,
    training_options={"conv3x3": EDBB_FACTORY},
)
