"""The branches of the re-parameterizable 3x3 blocks (``rep_block.RepBlock``: RepVGG, DBB, ECB and EFDN's EDBB,
paper Fig. 2, Sec. 3.1), each foldable into one 3x3 convolution; a branch two blocks share is written once here.

Every branch has ``forward(x)`` (its own computation, stride 1, output size = input size) and ``kernel_bias()``
returning the equivalent ``(out, in, 3, 3)`` kernel and ``(out,)`` bias of a zero-padded 3x3 convolution.

Sequential 1x1 -> 3x3 branches pad the 1x1 output with the 1x1 bias, not with zeros (ECBSR ``SeqConv3x3``,
DBB ``BNAndPadLayer``): the 1x1 output at a zero-padded input pixel is exactly its bias, so
``pad_bias(conv1x1(x)) == conv1x1(pad_zero(x))`` and the pair folds into one 3x3 kernel exactly, borders included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.ops.edges import EDGE_FILTERS

KernelBias = tuple[torch.Tensor, torch.Tensor]

#: DBB's average-pooling path as a fixed 3x3 filter: AvgPool2d(3, stride 1) on the bias-padded map = 1/9 per tap.
AVGPOOL = torch.full((3, 3), 1.0 / 9.0)
#: The fixed filters of ``ScaledFilterBranch``: the EDBB / ECB edge filters and the DBB average pool.
FIXED_FILTERS: dict[str, torch.Tensor] = {**EDGE_FILTERS, "avgpool": AVGPOOL}


def pad_with_bias(y: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Pad ``y`` (N, C, H, W) by one pixel and fill that border with the per-channel ``bias`` (C,)."""
    out = F.pad(y, (1, 1, 1, 1))
    b = bias.view(1, -1, 1, 1)
    out[:, :, :1, :] = b
    out[:, :, -1:, :] = b
    out[:, :, :, :1] = b
    out[:, :, :, -1:] = b
    return out


class Conv3x3Branch(nn.Conv2d):
    """The plain 3x3 convolution branch."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 3, padding=1)

    def kernel_bias(self) -> KernelBias:
        return self.weight, self.bias


class Conv1x1Branch(nn.Conv2d):
    """The 1x1 convolution branch; its kernel is the 3x3 kernel that is zero except at the centre."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1)

    def kernel_bias(self) -> KernelBias:
        return F.pad(self.weight, (1, 1, 1, 1)), self.bias


class IdentityBranch(nn.Module):
    """The identity (skip) branch, ``in == out`` only: kernel = one at the centre tap of the diagonal."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        kernel = torch.zeros(channels, channels, 3, 3)
        kernel[:, :, 1, 1] = torch.eye(channels)
        # Constant, not a learnable weight: kept out of the state dict (the block has the same keys with or without).
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def kernel_bias(self) -> KernelBias:
        return self.kernel, self.kernel.new_zeros(self.kernel.shape[0])


class ExpandBranch(nn.Module):
    """1x1 expand (in -> mid) then 3x3 squeeze (mid -> out, no padding after the bias padding).

    Fold: K[o, i] = sum_m W3[o, m] * W1[m, i],  b[o] = b3[o] + sum_{m, taps} W3[o, m, :, :] * b1[m].
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int) -> None:
        super().__init__()
        self.conv1x1 = nn.Conv2d(in_channels, mid_channels, 1)
        self.conv3x3 = nn.Conv2d(mid_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3x3(pad_with_bias(self.conv1x1(x), self.conv1x1.bias))

    def kernel_bias(self) -> KernelBias:
        w1 = self.conv1x1.weight[:, :, 0, 0]
        w3 = self.conv3x3.weight
        kernel = torch.einsum("omhw,mi->oihw", w3, w1)
        bias = self.conv3x3.bias + torch.einsum("omhw,m->o", w3, self.conv1x1.bias)
        return kernel, bias


class ScaledFilterBranch(nn.Module):
    """1x1 conv (in -> out), then a fixed depthwise 3x3 filter (``FIXED_FILTERS``: Sobel-x/y or Laplacian of
    ``sr_lightning.ops.edges``, or the 1/9 average pool) times a learnable per-channel ``gain``, plus a learnable
    per-channel ``bias`` (official EDBB / ECBSR ``SeqConv3x3``; the paper's Table 3 lists DBB's avg-pool path under
    the same "scaled filter" column).

    Fold: K[o, i] = gain[o] * filter * W1[o, i],  b[o] = bias[o] + gain[o] * sum(filter) * b1[o].
    Gain and bias start at N(0, 1e-3^2) as in the official code, for every filter (DBB's avg path ends in a BN whose
    affine starts at gain 1, bias 0; here it starts like the edge branches).
    """

    def __init__(self, in_channels: int, out_channels: int, filter_name: str) -> None:
        super().__init__()
        if filter_name not in FIXED_FILTERS:
            raise ValueError(f"unknown fixed filter {filter_name!r}; choose from {sorted(FIXED_FILTERS)}")
        self.filter_name = filter_name
        self.conv1x1 = nn.Conv2d(in_channels, out_channels, 1)
        self.gain = nn.Parameter(torch.randn(out_channels) * 1e-3)  # official name: scale
        self.bias = nn.Parameter(torch.randn(out_channels) * 1e-3)
        self.register_buffer("filter", FIXED_FILTERS[filter_name].clone(), persistent=False)

    def _depthwise(self) -> torch.Tensor:
        """The (out, 3, 3) filters of the depthwise step, times their gains."""
        return self.gain.view(-1, 1, 1) * self.filter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = pad_with_bias(self.conv1x1(x), self.conv1x1.bias)
        weight = self._depthwise().unsqueeze(1)
        return F.conv2d(y, weight, self.bias, groups=weight.shape[0])

    def kernel_bias(self) -> KernelBias:
        dw = self._depthwise()
        kernel = dw.unsqueeze(1) * self.conv1x1.weight  # (out, 1, 3, 3) * (out, in, 1, 1)
        bias = self.bias + dw.sum(dim=(1, 2)) * self.conv1x1.bias
        return kernel, bias

    def extra_repr(self) -> str:
        return f"filter={self.filter_name!r}"
