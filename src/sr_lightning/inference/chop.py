"""EDSR-style test-time chop (the one the official FDIWN test command uses).

The LR image is split into four overlapping quadrants of size (h//2 + shave) x (w//2 + shave), each anchored at its
own corner; quadrants whose LR area is still >= `min_size` are chopped again recursively. From every output only the
part belonging to its quadrant is kept. Networks with global pooling (FDIWN's shuffle attention) therefore give
slightly different results than whole-image inference; the FDIWN paper's numbers are the chopped ones.
Written out: the official chopped numbers need EDSR's exact split and recursion, which no maintained package ships
(generic tilers split and blend differently).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Net = Callable[[torch.Tensor], torch.Tensor]


def forward_chop(net: Net, lr: torch.Tensor, scale: int, shave: int = 10, min_size: int = 160_000) -> torch.Tensor:
    """Run `net` on `lr` (N,C,h,w) quadrant by quadrant and stitch the x`scale` outputs."""
    _, _, h, w = lr.shape
    h_half, w_half = h // 2, w // 2
    h_size, w_size = h_half + shave, w_half + shave
    quadrants = [
        lr[..., :h_size, :w_size],
        lr[..., :h_size, w - w_size :],
        lr[..., h - h_size :, :w_size],
        lr[..., h - h_size :, w - w_size :],
    ]
    # EDSR recurses while the quadrant area is >= min_size; stopping also when a quadrant would not shrink
    # (tiny images, min_size < ~(2*shave)^2) only differs where EDSR itself would recurse forever.
    if h_size * w_size < min_size or h_size >= h or w_size >= w:
        # All four quadrants have the same size: one batched call (per-sample networks give identical outputs).
        outs = net(torch.cat(quadrants, dim=0)).split(lr.shape[0], dim=0)
    else:
        outs = [forward_chop(net, q, scale, shave, min_size) for q in quadrants]

    H, W = h * scale, w * scale
    hh, wh = h_half * scale, w_half * scale
    hs, ws = h_size * scale, w_size * scale
    out = outs[0].new_empty(lr.shape[0], outs[0].shape[1], H, W)
    out[..., :hh, :wh] = outs[0][..., :hh, :wh]
    out[..., :hh, wh:] = outs[1][..., :hh, ws - W + wh :]
    out[..., hh:, :wh] = outs[2][..., hs - H + hh :, :wh]
    out[..., hh:, wh:] = outs[3][..., hs - H + hh :, ws - W + wh :]
    return out
