"""Convolution algebra for inference-time folds: every function returns a new plain ``nn.Conv2d`` computing, in real
arithmetic, exactly the composite it replaces (`sr_lightning.archs.optimize` applies them; the networks' own folds
are in ``archs/efdn/fast.py`` and ``archs/fdiwn/fast*.py``).

- `scaled_conv`: a scalar or per-channel gain after a conv (``out_scale``) or before it (``in_scale``);
- `permuted_conv`: a channel permutation after a conv (its output channels reordered) or before it;
- `stacked_conv`: several convs of the same input as one conv whose outputs are their concatenation;
- `split_input_conv`: a conv of a concatenation as a sum of convs of its parts;
- `composed_1x1`: a 1x1 conv after another conv (``second(first(x))``) as one conv;
- `shuffle_permutation`, `shuffled_cat`: ShuffleNet's channel shuffle as an index map, and a concatenation followed by
  a shuffle written in one copy.

Grouped convs are supported where the algebra keeps the grouping (output gains, output permutations within the
whole, input gains).
"""

from __future__ import annotations

import torch
from torch import nn


def _new_conv(like: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None, groups: int | None = None) -> nn.Conv2d:
    """A conv with `like`'s geometry (kernel, stride, padding, dilation) holding `weight` and `bias`."""
    out_ch, in_per_group = weight.shape[:2]
    groups = like.groups if groups is None else groups
    conv = nn.Conv2d(
        in_per_group * groups,
        out_ch,
        tuple(weight.shape[2:]),  # type: ignore[arg-type]
        stride=like.stride,  # type: ignore[arg-type]
        padding=like.padding,  # type: ignore[arg-type]
        dilation=like.dilation,  # type: ignore[arg-type]
        groups=groups,
        bias=bias is not None,
        padding_mode=like.padding_mode,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)  # type: ignore[union-attr]
    return conv.train(like.training).requires_grad_(like.weight.requires_grad)


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    b = conv.bias
    return b.detach() if b is not None else conv.weight.new_zeros(conv.out_channels)


@torch.no_grad()
def scaled_conv(
    conv: nn.Conv2d,
    out_scale: float | torch.Tensor | None = None,
    in_scale: float | torch.Tensor | None = None,
) -> nn.Conv2d:
    """``out_scale * conv(in_scale * x)``: scalars or per-channel vectors (over the conv's output / input channels).

    An input gain must be a scalar or the conv ungrouped, and the conv must not pad with a non-zero mode (a zero pad
    of a scaled input is the scaled zero pad, so ``padding_mode="zeros"`` folds exactly)."""
    w = conv.weight.detach().clone()
    b = conv.bias.detach().clone() if conv.bias is not None else None
    if in_scale is not None:
        s = torch.as_tensor(in_scale, dtype=w.dtype, device=w.device)
        if s.numel() > 1 and conv.groups != 1:
            raise ValueError("a per-channel input gain folds into an ungrouped conv only")
        if conv.padding_mode != "zeros" and s.numel() > 1:
            raise ValueError(f"padding_mode={conv.padding_mode!r}: only zero padding commutes with an input gain")
        w = w * (s.view(1, -1, 1, 1) if s.numel() > 1 else s)
    if out_scale is not None:
        s = torch.as_tensor(out_scale, dtype=w.dtype, device=w.device)
        w = w * (s.view(-1, 1, 1, 1) if s.numel() > 1 else s)
        b = b * s if b is not None else None
    return _new_conv(conv, w, b)


@torch.no_grad()
def permuted_conv(
    conv: nn.Conv2d, out_perm: torch.Tensor | None = None, in_perm: torch.Tensor | None = None
) -> nn.Conv2d:
    """The conv with permuted channels: ``new(x) == conv(x)[:, out_perm]``, and ``new(x[:, in_perm]) == conv(x)``.
    A grouped conv takes no input permutation, and an output one only within each group."""
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else None
    if out_perm is not None:
        per = conv.out_channels // conv.groups
        groups_of = (out_perm // per).view(conv.groups, per)
        if not bool((groups_of == torch.arange(conv.groups, device=out_perm.device)[:, None]).all()):
            raise ValueError("this output permutation moves channels between the groups of a grouped conv")
        w, b = w[out_perm], (b[out_perm] if b is not None else None)
    if in_perm is not None:
        if conv.groups != 1:
            raise ValueError("an input permutation folds into an ungrouped conv only")
        w = w[:, in_perm]
    return _new_conv(conv, w.clone(), b.clone() if b is not None else None)


@torch.no_grad()
def stacked_conv(convs: list[nn.Conv2d]) -> nn.Conv2d:
    """One conv whose output is ``cat([c(x) for c in convs], dim=1)``: same input, kernel, stride, padding; ungrouped;
    a smaller kernel is zero-padded to the largest (centred, with the padding that keeps its alignment)."""
    first = convs[0]
    k = max(c.kernel_size[0] for c in convs)
    weights, biases = [], []
    for c in convs:
        if c.groups != 1 or c.in_channels != first.in_channels or c.stride != first.stride:
            raise ValueError("stacked_conv needs ungrouped convs of one input and one stride")
        pad = (k - c.kernel_size[0]) // 2
        if c.kernel_size[0] != c.kernel_size[1] or c.padding != (c.kernel_size[0] // 2,) * 2 or c.dilation != (1, 1):
            raise ValueError("stacked_conv needs square, 'same'-padded, undilated kernels")
        weights.append(nn.functional.pad(c.weight.detach(), (pad, pad, pad, pad)))
        biases.append(_bias(c))
    like = max(convs, key=lambda c: c.kernel_size[0])
    return _new_conv(like, torch.cat(weights), torch.cat(biases))


@torch.no_grad()
def split_input_conv(conv: nn.Conv2d, widths: list[int]) -> list[nn.Conv2d]:
    """Convs ``c_i`` with ``conv(cat(xs)) == sum(c_i(x_i))`` for inputs of the given widths (ungrouped ``conv``);
    the bias goes to the first."""
    if conv.groups != 1 or sum(widths) != conv.in_channels:
        raise ValueError(f"widths {widths} do not split an ungrouped conv of {conv.in_channels} inputs")
    bounds = torch.tensor([0, *widths]).cumsum(0).tolist()
    weight = conv.weight.detach()
    return [
        _new_conv(conv, weight[:, lo:hi].clone(), _bias(conv).clone() if i == 0 and conv.bias is not None else None)
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]


@torch.no_grad()
def composed_1x1(first: nn.Conv2d, second: nn.Conv2d) -> nn.Conv2d:
    """``second(first(x))`` as one conv with ``first``'s geometry; ``second`` is an ungrouped, unpadded, stride-1 1x1
    conv. Exact at the border too: ``first``'s padding pads ``x``, and ``second`` maps each output pixel alone."""
    if second.kernel_size != (1, 1) or second.groups != 1 or second.stride != (1, 1) or second.padding != (0, 0):
        raise ValueError("composed_1x1 needs `second` to be an ungrouped, unpadded, stride-1 1x1 conv")
    if first.groups != 1:
        raise ValueError("composed_1x1 needs `first` ungrouped")
    w2 = second.weight.detach()[:, :, 0, 0]
    w = torch.einsum("om,mikl->oikl", w2, first.weight.detach())
    b = w2 @ _bias(first) + _bias(second)
    has_bias = first.bias is not None or second.bias is not None
    return _new_conv(first, w, b if has_bias else None)


def shuffle_permutation(channels: int, groups: int) -> torch.Tensor:
    """``perm`` with ``channel_shuffle(x, groups) == x[:, perm]`` (ShuffleNet: (g, k) channels read as (k, g))."""
    if channels % groups:
        raise ValueError(f"{channels} channels do not split into {groups} groups")
    return torch.arange(channels).view(groups, channels // groups).t().reshape(-1)


def shuffled_cat(tensors: list[torch.Tensor], groups: int) -> torch.Tensor:
    """``channel_shuffle(torch.cat(tensors, 1), groups)`` written in one copy, in the inputs' memory format.

    Each input must hold a whole number of the ``groups`` channel groups (equal widths); else cat, then index."""
    n, c, h, w = tensors[0].shape
    total = c * len(tensors)
    per_group = total // groups
    if total % groups or c % per_group or any(t.shape != tensors[0].shape for t in tensors):
        return torch.cat(tensors, 1)[:, shuffle_permutation(total, groups).to(tensors[0].device)]
    g_each = c // per_group
    if all(t.is_contiguous(memory_format=torch.channels_last) for t in tensors) and c > 1:
        parts = [t.permute(0, 2, 3, 1).reshape(n, h, w, g_each, per_group).transpose(3, 4) for t in tensors]
        out = torch.cat(parts, dim=4)  # (n, h, w, per_group, groups), contiguous
        return out.view(n, h, w, total).permute(0, 3, 1, 2)
    parts = [t.reshape(n, g_each, per_group, h, w).transpose(1, 2) for t in tensors]
    return torch.cat(parts, dim=2).view(n, total, h, w)
