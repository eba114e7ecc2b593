"""Inference forms of FDIWN's small units: shuffle attention as one per-channel gate, wide units with their gains and
channel shuffle folded into their convs, combination coefficients from one two-pass `var_mean` (`fast.fold_fdiwn`
uses them; each equals its module in real arithmetic: tests/test_inference_folds.py).

Shuffle attention (attention.py) per channel c of its input z: a "channel" channel gets the gate
``sigmoid(cw * mean(z_c) + cb)``, a "spatial" one ``sigmoid(sw * (gamma * (z_c - mu_c) / sqrt(var_c + eps) + beta) +
sb)``; both are ``sigmoid(A_c * z_c + B_c)`` with per-channel A, B from the channel's mean and variance, so SA is
``z * sigmoid(A * z + B)`` followed by its 2-group channel shuffle. A gain g after SA (the WIRW/WCRW's lambda_res)
is absorbed by the conv before it: with z' = g z, the gate is the same function of z' with cw / g, gamma * sign(g)
and eps * g^2. The shuffle moves to that conv's output channels (and the per-channel constants with it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.archs.fdiwn.attention import ShuffleAttention
from sr_lightning.archs.fdiwn.scf import CombinationCoefficient
from sr_lightning.archs.fdiwn.units import WideUnit
from sr_lightning.archs.linear_folds import permuted_conv, scaled_conv, shuffle_permutation


def var_mean(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel population variance and mean over H, W, two-pass (centred squares, as the official ``std``):
    about 10x faster than ``torch.var_mean`` (a Welford loop) on CPU, and as accurate."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    centred = x - mean
    return centred.mul_(centred).mean(dim=(2, 3), keepdim=True), mean


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a channels_last tensor (that is not also contiguous), else contiguous."""
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def select_channels(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[:, index]`` in ``x``'s memory format (a channels_last gather stays channels_last)."""
    if memory_format(x) == torch.channels_last:
        return x.permute(0, 2, 3, 1)[..., index].permute(0, 3, 1, 2)
    return x.index_select(1, index)


class FastShuffleAttention(nn.Module):
    """``select(z * sigmoid(A z + B), out_index)``: shuffle attention with an optional gain folded in (see the module
    doc). Built by `from_attention`; `out_index` is the 2-group shuffle unless the conv before took it."""

    def __init__(self, chan_scale: torch.Tensor, spat_scale: torch.Tensor, bias: torch.Tensor, eps: float,
                 out_index: torch.Tensor | None) -> None:  # fmt: skip
        super().__init__()
        self.register_buffer("chan_scale", chan_scale.view(1, -1, 1, 1))
        self.register_buffer("spat_scale", spat_scale.view(1, -1, 1, 1))
        self.register_buffer("bias", bias.view(1, -1, 1, 1))
        self.register_buffer("out_index", out_index)
        self.eps = float(eps)

    @classmethod
    @torch.no_grad()
    def from_attention(
        cls, sa: ShuffleAttention, channels: int, gain: float = 1.0, shuffle_in_conv: bool = False
    ) -> FastShuffleAttention:
        """`sa` preceded by a conv whose output was multiplied by ``gain`` (non-zero); with ``shuffle_in_conv`` that
        conv's outputs are also shuffled (`permuted_conv` by `shuffle_permutation(channels, 2)`)."""
        if gain == 0:
            raise ValueError("a zero gain cannot be divided out of shuffle attention")
        group = channels // sa.groups
        half = group // 2
        pos = torch.arange(channels) % group
        idx, is_chan = pos % half, pos < half
        sign = 1.0 if gain > 0 else -1.0
        gamma, beta = sa.norm.weight.detach().view(-1), sa.norm.bias.detach().view(-1)
        cw, cb = sa.channel_weight.detach().view(-1), sa.channel_bias.detach().view(-1)
        sw, sb = sa.spatial_weight.detach().view(-1), sa.spatial_bias.detach().view(-1)
        zero = torch.zeros((), dtype=cw.dtype)
        chan_scale = torch.where(is_chan, cw[idx] / gain, zero)
        spat_scale = torch.where(is_chan, zero, sw[idx] * gamma[idx] * sign)
        bias = torch.where(is_chan, cb[idx], sw[idx] * beta[idx] + sb[idx])
        perm = shuffle_permutation(channels, 2)
        if shuffle_in_conv:
            chan_scale, spat_scale, bias = chan_scale[perm], spat_scale[perm], bias[perm]
        return cls(chan_scale, spat_scale, bias, sa.norm.eps * gain * gain, None if shuffle_in_conv else perm)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        var, mean = var_mean(z)
        a = self.spat_scale * torch.rsqrt(var + self.eps)
        b = torch.addcmul(self.bias, self.chan_scale - a, mean)
        out = torch.addcmul(b, a, z).sigmoid_().mul_(z)
        return out if self.out_index is None else select_channels(out, self.out_index)


class FastWideUnit(nn.Module):
    """A WIRW / WCRW times ``out_gain``: lambda_res, lambda_x and ``out_gain`` folded into its convs (the identity
    shortcut keeps lambda_x as the ``alpha`` of its add), SA's shuffle folded into the body's last conv.
    ``forward(x, out=None)`` writes into ``out`` when given (a slice of a concatenation)."""

    def __init__(self, unit: WideUnit, out_gain: float = 1.0) -> None:
        super().__init__()
        g_res = unit.gain_res.gain.item() * out_gain
        g_x = unit.gain_x.gain.item() * out_gain
        channels = unit.conv.out_channels
        self.expand, self.reduce = unit.expand, unit.reduce
        # a zero lambda_res (never seen in trained weights) keeps the body unscaled and multiplies afterwards
        self.post_gain = 0.0 if g_res == 0 else 1.0
        conv = scaled_conv(unit.conv, out_scale=g_res) if g_res != 0 else unit.conv
        self.conv = permuted_conv(conv, out_perm=shuffle_permutation(channels, 2))
        self.attn = FastShuffleAttention.from_attention(unit.attn, channels, g_res or 1.0, shuffle_in_conv=True)
        if isinstance(unit.shortcut, nn.Conv2d):
            self.shortcut: nn.Conv2d | None = scaled_conv(unit.shortcut, out_scale=g_x)
            self.gain_x = 1.0
        else:
            self.shortcut, self.gain_x = None, g_x

    def forward(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        body = self.attn(self.conv(self.reduce(F.relu_(self.expand(x)))))
        if self.post_gain != 1.0:
            body = body.mul_(self.post_gain)
        short = x if self.shortcut is None else self.shortcut(x)
        if out is not None:
            return torch.add(body, short, alpha=self.gain_x, out=out)
        return body.add_(short, alpha=self.gain_x)


class FastCombinationCoefficient(nn.Module):
    """`CombinationCoefficient` with the mean and the population std of each channel from one `var_mean`."""

    def __init__(self, cc: CombinationCoefficient) -> None:
        super().__init__()
        self.mean_mlp, self.std_mlp = cc.mean_mlp, cc.std_mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = var_mean(x)
        return (self.mean_mlp(mean) + self.std_mlp(var.sqrt())) * 0.5
