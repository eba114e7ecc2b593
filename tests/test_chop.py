"""The EDSR-style quadrant chop (`forward_chop`) stitches the right parts of the right quadrants."""

from __future__ import annotations

import pytest
import torch
from _tolerance import abs_copy, assert_within, two_evaluations
from torch import nn

from sr_lightning.inference.chop import forward_chop


def local_net(scale: int) -> nn.Module:
    """A network with a small receptive field (radius 3 LR pixels < the 10-pixel chop overlap)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 3 * scale**2, 3, padding=1),
        nn.PixelShuffle(scale),
    ).eval()


@pytest.mark.parametrize(("scale", "size"), [(2, (70, 90)), (3, (64, 61)), (4, (75, 75))])
@pytest.mark.parametrize("min_size", [160_000, 1500])  # 1500: chops recursively (quadrants of quadrants)
def test_chop_equals_whole_image_for_local_networks(scale, size, min_size):
    net = local_net(scale)
    lr = torch.rand(2, 3, *size)
    with torch.no_grad():
        whole, chopped = net(lr), forward_chop(net, lr, scale, shave=10, min_size=min_size)
        # Each output pixel is the same function of the same LR pixels, evaluated on inputs of other sizes (the
        # conv algorithm may change): three chained dot products of 3*9 + 1, 8*9 + 1, 8*9 + 1 terms, so the two
        # differ by <= 2 gamma(174) times the same network on |lr| with |weights| (ReLU only drops terms).
        bound = two_evaluations(abs_copy(net)(lr.abs()), 28 + 73 + 73)
    assert chopped.shape == whole.shape
    assert_within(chopped, whole, bound, "chop")


def test_chop_uses_quadrant_outputs():
    """With a global operation the result depends on the tile: each output quadrant comes from its own tile."""
    scale, h, w, shave = 2, 20, 30, 4

    def mean_net(x: torch.Tensor) -> torch.Tensor:  # every output pixel = the mean of its input tile
        return x.mean(dim=(-2, -1), keepdim=True).expand(-1, -1, x.shape[-2] * scale, x.shape[-1] * scale)

    lr = torch.arange(h * w, dtype=torch.float64).view(1, 1, h, w)
    out = forward_chop(mean_net, lr, scale, shave=shave)
    hs, ws = h // 2 + shave, w // 2 + shave
    tiles = [lr[..., :hs, :ws], lr[..., :hs, w - ws :], lr[..., h - hs :, :ws], lr[..., h - hs :, w - ws :]]
    hh, wh = h // 2 * scale, w // 2 * scale
    corners = [out[..., 0, 0], out[..., 0, wh], out[..., hh, 0], out[..., hh, wh]]
    for tile, corner in zip(tiles, corners):
        # two float64 evaluations (a batch of 4 tiles, one tile view) of a mean of n terms + the division
        tol = two_evaluations(tile.abs().mean().item(), tile.numel() + 1, torch.float64)
        assert corner.item() == pytest.approx(tile.mean().item(), abs=tol)
