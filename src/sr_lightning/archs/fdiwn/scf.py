"""The WDIB's fusion pieces: combination coefficients (official ``CoffConv``) and Self-Calibration Fusion (SCF).

* :class:`CombinationCoefficient` produces per-channel weights for the butterfly interactions of the WDIB
  (eqs. 8-16): the mean of a global-average-pool branch and a contrast (standard deviation) branch, each a
  bottleneck MLP of 1x1 convs. Official difference: each branch ends ReLU -> sigmoid, so the weights lie in
  [0.5, 1) rather than (0, 1).
* :class:`SelfCalibrationFusion` merges the WDIB's two refined paths: a WCRW on the concatenation plus the second
  path gated by a sigmoid of a 1x1 conv of the same concatenation (official ``fuse1``, ``fuse2``, ``sigmoid3``).
"""

from __future__ import annotations

import torch
from torch import nn

from sr_lightning.archs.fdiwn.units import Gain, wcrw


def spatial_std(x: torch.Tensor) -> torch.Tensor:
    """Per-channel standard deviation over H, W (population, as the official ``std``), shape (N, C, 1, 1)."""
    centred = x - x.mean(dim=(2, 3), keepdim=True)
    return centred.pow(2).mean(dim=(2, 3), keepdim=True).sqrt()


def _bottleneck(channels: int, reduction: int) -> nn.Sequential:
    hidden = channels // reduction
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, channels, 1),
        nn.ReLU(inplace=True),  # official: ReLU before the sigmoid (weights >= 0.5)
        nn.Sigmoid(),
    )


class CombinationCoefficient(nn.Module):
    """Per-channel weights (N, C, 1, 1) of a feature: (MLP_mean(avgpool(x)) + MLP_std(std(x))) / 2."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.mean_mlp = _bottleneck(channels, reduction)
        self.std_mlp = _bottleneck(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.mean_mlp(x.mean(dim=(2, 3), keepdim=True)) + self.std_mlp(spatial_std(x))) / 2


class SelfCalibrationFusion(nn.Module):
    """SCF of the two refined WDIB paths q, p (C channels each):

        z = [lambda_q * q, lambda_p * p]        (channel concatenation, learnt scalar weights)
        SCF(q, p) = WCRW(z) + sigmoid(conv1x1(z)) * p

    The WDIB adds its input and applies shuffle attention afterwards.
    """

    def __init__(self, channels: int, expansion: float, sa_groups: int = 6) -> None:
        super().__init__()
        self.gain_q = Gain(1.0)
        self.gain_p = Gain(1.0)
        self.fuse = wcrw(2 * channels, channels, expansion, sa_groups)
        self.gate = nn.Conv2d(2 * channels, channels, 1, bias=False)

    def forward(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        z = torch.cat([self.gain_q(q), self.gain_p(p)], dim=1)
        return self.fuse(z) + torch.sigmoid(self.gate(z)) * p
