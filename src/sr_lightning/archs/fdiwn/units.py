"""FDIWN's wide residual weighting units: WIRW (identity shortcut) and WCRW (convolutional shortcut).

Both are a wide-activation body (WDSR-style: weight-normalised 1x1 expand -> ReLU -> 1x1 reduce -> 3x3), followed by
shuffle attention, and a shortcut; each of the two terms is multiplied by a learnt scalar ("adaptive weights"):

    WIRW:  y = lambda_res * SA(body(x)) + lambda_x * x
    WCRW:  y = lambda_res * SA(body(x)) + lambda_x * conv3x3(x)

Official code: ``SRBW1`` is the WIRW, ``SRBW`` (distillation path) and ``SRBW2`` (fusion in SCF) are WCRWs. Their
expansion ratios differ between the official x4 model (5/2, 9/2, 9/4) and the x2/x3 models (2, 4, 2); the paper
gives none. The reduce width is fixed by the code: C/2 for WIRW, min(C_in, C_out) for both WCRWs.
"""

from __future__ import annotations

import torch
from torch import nn

from sr_lightning.archs.fdiwn.attention import ShuffleAttention
from sr_lightning.archs.weight_norm import weight_normed


class Gain(nn.Module):
    """A learnt scalar multiplier (official ``Scale``; the paper's adaptive weights lambda). Named ``Gain`` here:
    "scale" means the SR factor only."""

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor([float(init)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


def expanded_width(channels: int, ratio: float) -> int:
    """Width of the expanded (wide-activation) layer: ``floor(channels * ratio)`` as in the official ``c*9//2``."""
    width = int(channels * ratio + 1e-9)
    if width < 1:
        raise ValueError(f"expansion ratio {ratio} gives an empty layer for {channels} channels")
    return width


class WideUnit(nn.Module):
    """Wide residual weighting unit; ``shortcut="identity"`` is a WIRW, ``"conv"`` a WCRW (see the module doc).

    Args:
        in_channels / out_channels: widths (must be equal for the identity shortcut).
        expansion: expand ratio of the first 1x1 conv, relative to ``in_channels``.
        mid_channels: output width of the reduce 1x1 conv (input of the final 3x3).
        sa_groups: groups of the shuffle attention on the body output.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expansion: float,
        mid_channels: int,
        shortcut: str = "identity",
        sa_groups: int = 6,
    ) -> None:
        super().__init__()
        if shortcut not in ("identity", "conv"):
            raise ValueError(f"shortcut must be 'identity' or 'conv', got {shortcut!r}")
        if shortcut == "identity" and in_channels != out_channels:
            raise ValueError(f"identity shortcut needs in == out channels, got {in_channels} -> {out_channels}")
        wide = expanded_width(in_channels, expansion)
        self.expand = weight_normed(nn.Conv2d(in_channels, wide, 1))
        self.act = nn.ReLU(inplace=True)
        self.reduce = weight_normed(nn.Conv2d(wide, mid_channels, 1))
        self.conv = weight_normed(nn.Conv2d(mid_channels, out_channels, 3, padding=1))
        self.attn = ShuffleAttention(out_channels, sa_groups)
        # The official shortcut conv is a plain 3x3 (bias, no weight norm).
        self.shortcut = nn.Conv2d(in_channels, out_channels, 3, padding=1) if shortcut == "conv" else nn.Identity()
        self.gain_res = Gain(1.0)
        self.gain_x = Gain(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body = self.attn(self.conv(self.reduce(self.act(self.expand(x)))))
        return self.gain_res(body) + self.gain_x(self.shortcut(x))


def wirw(channels: int, expansion: float, sa_groups: int = 6) -> WideUnit:
    """Wide Identical Residual Weighting unit (official ``SRBW1``): C -> C, reduce width C/2."""
    return WideUnit(channels, channels, expansion, channels // 2, "identity", sa_groups)


def wcrw(in_channels: int, out_channels: int, expansion: float, sa_groups: int = 6) -> WideUnit:
    """Wide Convolutional Residual Weighting unit (official ``SRBW`` C/2 -> C and ``SRBW2`` 2C -> C)."""
    return WideUnit(in_channels, out_channels, expansion, min(in_channels, out_channels), "conv", sa_groups)
