"""FDIWN's inference form (`fold_fdiwn`): the deploy form rewritten, exactly in real arithmetic, for speed.

- every scalar gain (WIRW/WCRW lambdas, SCF's lambda_q / lambda_p, FSWG's lambda_x / lambda_res: 312 per x4
  forward) is folded into a conv, or into the ``alpha`` of an add that happens anyway (`fast_units.FastWideUnit`);
- shuffle attention is one per-channel gate, its channel shuffle folded into the conv before it where there is one
  (`fast_units.FastShuffleAttention`);
- the butterfly products are fused multiply-adds (``addcmul``), gates and activations in place;
- the WDIB's two refined paths are written straight into the halves of SCF's concatenation (no ``cat``);
- the FSWG's concatenate-then-shuffle is one copy (`linear_folds.shuffled_cat`);
- the input's 0-255 scaling folds into the mean shift (and the raw second upsampling path), the output mean shift
  and the division by 255 into the last conv of both upsampling paths.

The folded network keeps its class (so `.scale`, `.min_input_size` and detection still apply) but not its state-dict
keys: files are written from the deploy form (`archs/optimize.py` marks an optimized network so that writers refuse).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.archs.fdiwn.fast_units import (
    FastCombinationCoefficient,
    FastShuffleAttention,
    FastWideUnit,
    memory_format,
)
from sr_lightning.archs.fdiwn.fswg import FSWG
from sr_lightning.archs.fdiwn.network import FDIWN
from sr_lightning.archs.fdiwn.scf import SelfCalibrationFusion
from sr_lightning.archs.fdiwn.wdib import LRELU_SLOPE, WDIB, DistillationStage
from sr_lightning.archs.linear_folds import composed_1x1, scaled_conv, shuffled_cat


class FastDistillation(nn.Module):
    """`DistillationStage`: WIRW -> in-place LeakyReLU -> split -> WCRW(remaining)."""

    def __init__(self, stage: DistillationStage) -> None:
        super().__init__()
        self.wirw, self.wcrw = FastWideUnit(stage.wirw), FastWideUnit(stage.wcrw)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        distilled, remaining = F.leaky_relu_(self.wirw(x), LRELU_SLOPE).chunk(2, dim=1)
        return distilled, self.wcrw(remaining)


class FastSCF(nn.Module):
    """`SelfCalibrationFusion` of ``z = cat(q, p)`` with lambda_q, lambda_p folded into the input channels of the convs
    reading z (the WCRW's expand and shortcut, the gate): ``WCRW(z) + sigmoid(gate(z)) * p``."""

    def __init__(self, scf: SelfCalibrationFusion) -> None:
        super().__init__()
        c = scf.gate.out_channels
        gains = torch.cat([scf.gain_q.gain.detach().expand(c), scf.gain_p.gain.detach().expand(c)])
        fuse = scf.fuse
        fuse.expand = scaled_conv(fuse.expand, in_scale=gains)
        fuse.shortcut = scaled_conv(fuse.shortcut, in_scale=gains)  # type: ignore[arg-type]
        self.fuse = FastWideUnit(fuse)
        self.gate = scaled_conv(scf.gate, in_scale=gains)

    def forward(self, z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return self.fuse(z).addcmul_(self.gate(z).sigmoid_(), p)


class FastWDIB(nn.Module):
    """`WDIB` (eqs. 8-16, official wiring; see wdib.py) with fused multiply-adds and no concatenation copy."""

    def __init__(self, wdib: WDIB) -> None:
        super().__init__()
        channels = wdib.gate_p.out_channels
        self.distil1, self.distil2 = FastDistillation(wdib.distil1), FastDistillation(wdib.distil2)
        self.cc1_f, self.cc1_x = FastCombinationCoefficient(wdib.cc1_f), FastCombinationCoefficient(wdib.cc1_x)
        self.cc2_q, self.cc2_f = FastCombinationCoefficient(wdib.cc2_q), FastCombinationCoefficient(wdib.cc2_f)
        self.gate_p, self.gate_q = wdib.gate_p, wdib.gate_q
        self.refine_q, self.refine_p = FastWideUnit(wdib.refine_q), FastWideUnit(wdib.refine_p)
        self.scf = FastSCF(wdib.scf)
        self.attn = FastShuffleAttention.from_attention(wdib.attn, channels)  # shuffles its output (x + SCF before)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1, f1 = self.distil1(x)
        p1 = torch.addcmul(x, self.cc1_f(f1), f1)
        q1 = torch.addcmul(f1, self.cc1_x(x), x)
        d2, f2 = self.distil2(p1)
        p2 = torch.addcmul(f2, self.cc2_q(q1), q1).mul_(self.gate_p(d2).sigmoid_())
        q2 = torch.addcmul(q1, self.cc2_f(f2), f2).mul_(self.gate_q(d1).sigmoid_())
        c = x.shape[1]
        if torch.jit.is_tracing():  # writes into views do not trace (TorchScript / ONNX exports): concatenate
            z = torch.cat([self.refine_q(q2), self.refine_p(p2)], dim=1)
        else:  # SCF's input cat(WIRW(q2), WIRW(p2)), written in place by the two WIRWs
            z = torch.empty((x.shape[0], 2 * c, *x.shape[2:]), dtype=x.dtype, device=x.device,
                            memory_format=memory_format(x))  # fmt: skip
            self.refine_q(q2, out=z[:, :c])
            self.refine_p(p2, out=z[:, c:])
        return self.attn(self.scf(z, z[:, c:]).add_(x))


class FastFSWG(nn.Module):
    """`FSWG` (see fswg.py): lambda_x folded into the last fusion conv (or the add's ``alpha`` without one),
    lambda_res into the residual WIRW, the fusions' concatenate-then-shuffle in one copy."""

    def __init__(self, fswg: FSWG) -> None:
        super().__init__()
        g_x = fswg.gain_x.gain.item()
        self.shuffle_groups = fswg.shuffle_groups
        self.wdib = nn.ModuleList(FastWDIB(w) for w in fswg.wdib)
        self.skip = fswg.skip
        fuse = list(fswg.fuse)
        if fuse:
            fuse[-1] = scaled_conv(fuse[-1], out_scale=g_x)
        self.fuse = nn.ModuleList(fuse)
        self.residual = FastWideUnit(fswg.residual, out_gain=fswg.gain_res.gain.item())
        # y = g_x * (fused + o_n) + g_res * WIRW(x); with no fusion conv, fused is o_1 = o_n
        self.gain_last = g_x if fuse else 2.0 * g_x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.wdib[0](x)]
        for k in range(1, len(self.wdib)):
            inp = outs[-1] if k == 1 else self.skip[k - 2](outs[-2]).add_(outs[-1])
            outs.append(self.wdib[k](inp))
        y = self.residual(x)
        fused = outs[0]
        for k, conv in enumerate(self.fuse, start=1):
            fused = conv(shuffled_cat([fused, outs[k]], self.shuffle_groups))
        if self.fuse:
            y.add_(fused)
        return y.add_(outs[-1], alpha=self.gain_last)


@torch.no_grad()
def fold_ends(net: FDIWN) -> None:
    """The 0-255 scaling into the mean shift (and a raw second path's first conv); the output mean shift and the
    division by 255 into the last conv of both upsampling paths (a 1x1 colour map after a pixel shuffle is the same
    map on each sub-pixel's channels before it: ``kron(M, I_{s^2})``). Sets ``rgb_range`` to 1."""
    r, s2 = net.rgb_range, net.scale**2
    net.sub_mean = scaled_conv(net.sub_mean, in_scale=r)
    if net.up2_input == "raw":
        net.up2[0] = scaled_conv(net.up2[0], in_scale=r)
    mean = net.add_mean
    colour = mean.weight.detach()[:, :, 0, 0]
    for path, bias in ((net.up1, mean.bias.detach()), (net.up2, torch.zeros_like(mean.bias))):
        last = path[1]
        mixer = nn.Conv2d(last.out_channels, last.out_channels, 1).to(colour)
        mixer.weight.copy_(torch.kron(colour, torch.eye(s2).to(colour))[:, :, None, None] / r)
        mixer.bias.copy_(bias.repeat_interleave(s2) / r)
        path[1] = composed_1x1(last, mixer)
    net.add_mean = nn.Identity()  # type: ignore[assignment]
    net.rgb_range = 1.0


def fold_fdiwn(net: nn.Module) -> dict[str, int]:
    """Fold a deploy-form `FDIWN` in place into its inference form; returns what was folded."""
    if not isinstance(net, FDIWN):
        raise TypeError(f"fold_fdiwn takes an FDIWN, got {type(net).__name__}")
    gains = sum(1 for m in net.modules() if type(m).__name__ == "Gain")
    net.fswg = nn.ModuleList(FastFSWG(g) for g in net.fswg)
    fold_ends(net)
    return {"fswg": len(net.fswg), "gains": gains, "ends": 1}
