"""Pixel losses that torch does not ship (L1 and L2 come from `torch.nn.L1Loss` / `torch.nn.MSELoss`)."""

from __future__ import annotations

import torch
from torch import nn


class CharbonnierLoss(nn.Module):
    """Charbonnier (smooth L1) loss: mean(sqrt((sr - hr)^2 + eps^2))."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((sr - hr).pow(2) + self.eps**2).mean()
