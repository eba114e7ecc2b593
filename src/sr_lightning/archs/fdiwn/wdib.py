"""Wide-residual Distillation Interaction Block (WDIB; official ``MY``), paper eqs. 8-16.

Two butterfly steps. Each step distils its input: a WIRW, LeakyReLU(0.05), then a channel split into a
*distilled* half d (kept aside) and a *remaining* half r that a WCRW refines back to C channels, f = WCRW(r).
The two paths p ("processed") and q ("carried") are then crossed, weighted by combination coefficients CC(.):

    step 1:   d1, f1 = distil1(x)
              p1 = x  + CC(f1) * f1              q1 = f1 + CC(x) * x
    step 2:   d2, f2 = distil2(p1)
              p2 = (f2 + CC(q1) * q1) * sigmoid(conv3x3(d2))
              q2 = (q1 + CC(f2) * f2) * sigmoid(conv3x3(d1))
    output:   y = SA(SCF(WIRW(q2), WIRW(p2)) + x)

The distilled halves come back as sigmoid gates on the step-2 outputs (Wide-Residual Distillation Connection,
WRDC). Official names: ``srb1/rb1`` = distil1, ``srb2/rb2`` = distil2, ``A1/B1/A2/B2_coffconv`` = the coefficients
of f1, x, q1, f2, ``conv_distilled1/2`` = the gates of p2 / q2, ``srb3/srb4`` = the WIRWs of q2 / p2. Every wiring
detail follows the official code (which produced the released weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.archs.fdiwn.attention import ShuffleAttention
from sr_lightning.archs.fdiwn.scf import CombinationCoefficient, SelfCalibrationFusion
from sr_lightning.archs.fdiwn.units import wcrw, wirw

#: negative slope of the LeakyReLU after each distillation WIRW (official ``activation('lrelu', 0.05)``)
LRELU_SLOPE = 0.05


class DistillationStage(nn.Module):
    """WIRW -> LeakyReLU -> split into (distilled, remaining) halves -> WCRW(remaining) back to C channels."""

    def __init__(self, channels: int, wirw_expansion: float, wcrw_expansion: float, sa_groups: int = 6) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"WDIB needs an even channel count, got {channels}")
        self.wirw = wirw(channels, wirw_expansion, sa_groups)
        self.wcrw = wcrw(channels // 2, channels, wcrw_expansion, sa_groups)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        distilled, remaining = F.leaky_relu(self.wirw(x), LRELU_SLOPE).chunk(2, dim=1)
        return distilled, self.wcrw(remaining)


class WDIB(nn.Module):
    """One WDIB (C -> C channels); ``expansion`` holds the ratios ``wirw``, ``wcrw`` and ``scf`` (see units.py)."""

    def __init__(self, channels: int, expansion: dict[str, float], sa_groups: int = 6, cc_reduction: int = 8) -> None:
        super().__init__()
        half = channels // 2
        self.distil1 = DistillationStage(channels, expansion["wirw"], expansion["wcrw"], sa_groups)
        self.distil2 = DistillationStage(channels, expansion["wirw"], expansion["wcrw"], sa_groups)
        self.cc1_f = CombinationCoefficient(channels, cc_reduction)  # official A1
        self.cc1_x = CombinationCoefficient(channels, cc_reduction)  # official B1
        self.cc2_q = CombinationCoefficient(channels, cc_reduction)  # official A2
        self.cc2_f = CombinationCoefficient(channels, cc_reduction)  # official B2
        self.gate_p = nn.Conv2d(half, channels, 3, padding=1, bias=False)  # from d2
        self.gate_q = nn.Conv2d(half, channels, 3, padding=1, bias=False)  # from d1
        self.refine_q = wirw(channels, expansion["wirw"], sa_groups)
        self.refine_p = wirw(channels, expansion["wirw"], sa_groups)
        self.scf = SelfCalibrationFusion(channels, expansion["scf"], sa_groups)
        self.attn = ShuffleAttention(channels, sa_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Butterfly step 1: the input x and the refined remaining half f1, cross-weighted.
        d1, f1 = self.distil1(x)
        p1 = self.cc1_f(f1) * f1 + x
        q1 = self.cc1_x(x) * x + f1
        # Butterfly step 2; the distilled halves of both steps gate the results (WRDC).
        d2, f2 = self.distil2(p1)
        p2 = (self.cc2_q(q1) * q1 + f2) * torch.sigmoid(self.gate_p(d2))
        q2 = (f2 * self.cc2_f(f2) + q1) * torch.sigmoid(self.gate_q(d1))
        return self.attn(self.scf(self.refine_q(q2), self.refine_p(p2)) + x)
