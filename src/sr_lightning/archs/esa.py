"""Enhanced Spatial Attention (ESA), the attention block of RFANet / RFDN that EFDN reuses in every EFDB.

Behaviour follows the official EFDN code (icandle/EFDN, models/EFDN_deploy.py, class ``ESA``):
1x1 reduce -> 3x3 stride-2 conv (no padding) -> max-pool 7/3 -> three 3x3 convs (ReLU after the first two)
-> bilinear upsample to the input size -> add a 1x1 skip of the reduced features -> 1x1 expand -> sigmoid
-> multiply the input. The input must be at least 15x15 pixels (stride-2 conv, then a 7x7 pooling window).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ESA(nn.Module):
    """Spatial attention mask ``x * sigmoid(...)``; ``mid_channels`` is the official ``n_feats // 4``.

    Key map to the official module (``att.*``): reduce=conv1, skip=conv_f, down=conv2, mid1=conv_max,
    mid2=conv3, mid3=conv3_, expand=conv4.
    """

    def __init__(self, channels: int = 48, mid_channels: int = 12) -> None:
        super().__init__()
        f = mid_channels
        self.reduce = nn.Conv2d(channels, f, 1)
        self.skip = nn.Conv2d(f, f, 1)
        self.down = nn.Conv2d(f, f, 3, stride=2)
        self.mid1 = nn.Conv2d(f, f, 3, padding=1)
        self.mid2 = nn.Conv2d(f, f, 3, padding=1)
        self.mid3 = nn.Conv2d(f, f, 3, padding=1)
        self.expand = nn.Conv2d(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        y = F.max_pool2d(self.down(reduced), kernel_size=7, stride=3)
        y = F.relu(self.mid1(y))
        y = F.relu(self.mid2(y))
        y = self.mid3(y)
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        mask = torch.sigmoid(self.expand(y + self.skip(reduced)))
        return x * mask
