"""Feature Shuffle Weighted Group (FSWG; official ``Li``): WDIBs, shuffled group-conv fusion, adaptive residual.

With n WDIBs B_1..B_n (official: n = 3):

    o_1 = B_1(x),   o_2 = B_2(o_1),   o_k = B_k(o_{k-1} + conv3x3(o_{k-2}))   for k >= 3
    c_1 = o_1,      c_k = gconv3x3(shuffle([c_{k-1}, o_k]))                 for k >= 2
    y   = lambda_x * (c_n + o_n) + lambda_res * WIRW(x)                     (eq. 21, adaptive residual)

``shuffle`` is a channel shuffle and ``gconv3x3`` a grouped 2C -> C conv (official: 4 groups each, no bias).
The paper describes the fusion as concatenation -> group conv -> channel shuffle; the official code (followed
here) shuffles the concatenation *before* the group conv, and both fusions use the same 4-group shuffle. For n != 3
(the paper's Fig. 6 study, n = 1..4) the formulas above are applied as written: this is our extension of the n = 3
wiring (n = 1: no skip or fusion convs, y = lambda_x * 2 o_1 + lambda_res * WIRW(x)).
"""

from __future__ import annotations

import torch
from torch import nn

from sr_lightning.archs.fdiwn.attention import channel_shuffle
from sr_lightning.archs.fdiwn.units import Gain, wirw
from sr_lightning.archs.fdiwn.wdib import WDIB


class FSWG(nn.Module):
    """One FSWG of ``num_wdib`` WDIBs (C -> C channels)."""

    def __init__(
        self,
        channels: int,
        expansion: dict[str, float],
        num_wdib: int = 3,
        shuffle_groups: int = 4,
        sa_groups: int = 6,
    ) -> None:
        super().__init__()
        if num_wdib < 1:
            raise ValueError(f"an FSWG needs at least 1 WDIB, got {num_wdib}")
        if (2 * channels) % shuffle_groups or channels % shuffle_groups:
            raise ValueError(f"channels ({channels}) must be divisible by shuffle_groups ({shuffle_groups})")
        self.shuffle_groups = shuffle_groups
        self.wdib = nn.ModuleList(WDIB(channels, expansion, sa_groups) for _ in range(num_wdib))
        # conv3x3(o_{k-2}) added to the input of WDIB k >= 3 (official ``conv``)
        self.skip = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in range(num_wdib - 2))
        # grouped fusion convs (official ``conv1``, ``conv2``)
        self.fuse = nn.ModuleList(
            nn.Conv2d(2 * channels, channels, 3, padding=1, groups=shuffle_groups, bias=False)
            for _ in range(num_wdib - 1)
        )
        self.residual = wirw(channels, expansion["wirw"], sa_groups)  # official ``rb1``
        self.gain_x = Gain(0.5)
        self.gain_res = Gain(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.wdib[0](x)]
        for k in range(1, len(self.wdib)):
            inp = outs[-1] if k == 1 else outs[-1] + self.skip[k - 2](outs[-2])
            outs.append(self.wdib[k](inp))
        fused = outs[0]
        for k, conv in enumerate(self.fuse, start=1):
            fused = conv(channel_shuffle(torch.cat([fused, outs[k]], dim=1), self.shuffle_groups))
        return self.gain_x(fused + outs[-1]) + self.gain_res(self.residual(x))
