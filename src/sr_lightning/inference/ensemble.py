"""The x8 geometric self-ensemble (Lim et al., EDSR, CVPRW 2017; Timofte et al., CVPR 2016): the network runs on
the eight flips/transposes of the input, each output is transformed back, and the eight are averaged."""

from __future__ import annotations

from collections.abc import Callable

import torch

Net = Callable[[torch.Tensor], torch.Tensor]


def _transform(x: torch.Tensor, code: int, inverse: bool = False) -> torch.Tensor:
    """Bit 0: flip left-right; bit 1: flip up-down; bit 2: transpose (applied last; undone first)."""
    if inverse and code & 4:
        x = x.transpose(-2, -1)
    if code & 1:
        x = x.flip(-1)
    if code & 2:
        x = x.flip(-2)
    if not inverse and code & 4:
        x = x.transpose(-2, -1)
    return x


def self_ensemble(net: Net, lr: torch.Tensor) -> torch.Tensor:
    """Mean of ``T^-1(net(T(lr)))`` over the eight dihedral transforms T of the image plane (float32 sum)."""
    total: torch.Tensor | None = None
    for code in range(8):
        out = _transform(net(_transform(lr, code).contiguous()), code, inverse=True).float()
        total = out if total is None else total.add_(out)
    assert total is not None
    return total.div_(8)
