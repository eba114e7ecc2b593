"""Shuffle attention (SA; Zhang & Yang, ICASSP 2021), the attention FDIWN puts after every wide unit and WDIB.

The official code uses the SA-Net layer unchanged (``sa_layer``, 6 groups); the FDIWN paper only names it.
"""

from __future__ import annotations

import torch
from torch import nn


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: (N, g*k, H, W) viewed as (N, g, k, H, W), transposed to (N, k, g, ...)."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleAttention(nn.Module):
    """SA: split the channels into ``groups`` groups; in each, half the channels get channel attention
    (global average pool -> per-channel affine -> sigmoid gate) and half get spatial attention (per-channel
    normalisation -> affine -> sigmoid gate); then the halves are re-interleaved by a 2-group channel shuffle.

    The affine parameters are shared by all groups (``channels // (2 * groups)`` of each kind). Global pooling and
    normalisation make the output depend on the whole input tile (whole-image vs chopped inference differ).
    """

    def __init__(self, channels: int, groups: int = 6) -> None:
        super().__init__()
        if channels % (2 * groups):
            raise ValueError(f"ShuffleAttention: channels ({channels}) must be divisible by 2 * groups ({2 * groups})")
        self.groups = groups
        half = channels // (2 * groups)
        self.channel_weight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.channel_bias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.spatial_weight = nn.Parameter(torch.zeros(1, half, 1, 1))
        self.spatial_bias = nn.Parameter(torch.ones(1, half, 1, 1))
        self.norm = nn.GroupNorm(half, half)  # one group per channel: instance norm with a learnt affine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x_chan, x_spat = x.reshape(n * self.groups, c // self.groups, h, w).chunk(2, dim=1)
        gate_c = torch.sigmoid(self.channel_weight * x_chan.mean(dim=(2, 3), keepdim=True) + self.channel_bias)
        gate_s = torch.sigmoid(self.spatial_weight * self.norm(x_spat) + self.spatial_bias)
        out = torch.cat([x_chan * gate_c, x_spat * gate_s], dim=1).reshape(n, c, h, w)
        return channel_shuffle(out, 2)
