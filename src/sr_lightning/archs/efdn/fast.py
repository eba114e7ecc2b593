"""EFDN's inference form (`fold_efdn`): the deploy form rewritten, exactly in real arithmetic, for speed.

- EFDB distill -> fuse: four 1x1 distillation convs (C -> C/2), their concatenation and the 1x1 fusion (2C -> C) are
  a sum of four 1x1 convs C -> C, one per distilled feature (`fold_distill_fuse`: each the fusion's slice times its
  distillation conv), accumulated in place as each feature appears: no concatenation (a channels_last ``cat`` was a
  quarter of EFDN's time) and the features are freed early;
- ESA reduce / skip: the skip 1x1 conv of the reduced features composes with the reduce conv, and both are one conv
  of the block's features (`fold_reduce_skip`);
- the block fusions H_j of eq. 6 (a 1x1 conv of ``[B_a, B_b]``) are two 1x1 convs summed in place (`split_pair`);
- activations, the attention mask and the residual add run in place.

The block keeps its class-level wiring (paper eq. 6 and the official forward are in network.py); state-dict keys change,
so files are written from the deploy form (`archs/optimize.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.archs.efdn.network import EFDB, EFDN, PairConv
from sr_lightning.archs.esa import ESA
from sr_lightning.archs.linear_folds import composed_1x1, split_input_conv, stacked_conv


def fold_distill_fuse(block: EFDB) -> list[nn.Conv2d]:
    """Convs ``e_i`` with ``fuse(cat(d_0(x), d_1(f1), d_2(f2), d_3(f3))) == e_0(x) + e_1(f1) + e_2(f2) + e_3(f3)``: the
    fusion split by input slices (`split_input_conv`), each composed with its distillation conv."""
    widths = [d.out_channels for d in block.distill]
    return [composed_1x1(d, part) for d, part in zip(block.distill, split_input_conv(block.fuse, widths))]


def fold_reduce_skip(esa: ESA) -> nn.Conv2d:
    """``cat(reduce(x), skip(reduce(x)))`` as one 1x1 conv of ``x``."""
    return stacked_conv([esa.reduce, composed_1x1(esa.reduce, esa.skip)])


def split_pair(fuse: nn.Conv2d) -> PairConv:
    """A 1x1 conv of ``[a, b]`` (equal widths) as ``first(a) + second(b)``."""
    half = fuse.in_channels // 2
    return PairConv(*split_input_conv(fuse, [half, fuse.in_channels - half]))


class FastESA(nn.Module):
    """`ESA` with reduce and skip in one conv and its mask applied in place; same as esa.py otherwise."""

    def __init__(self, esa: ESA) -> None:
        super().__init__()
        self.mid_channels = esa.reduce.out_channels
        self.reduce_skip = fold_reduce_skip(esa)
        self.down, self.mid1, self.mid2, self.mid3, self.expand = esa.down, esa.mid1, esa.mid2, esa.mid3, esa.expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = self.reduce_skip(x)
        reduced, skipped = both[:, : self.mid_channels], both[:, self.mid_channels :]
        y = F.max_pool2d(self.down(reduced), kernel_size=7, stride=3)
        y = self.mid3(F.relu_(self.mid2(F.relu_(self.mid1(y)))))
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.expand(y.add_(skipped)).sigmoid_().mul_(x)


class FastEFDB(nn.Module):
    """`EFDB` with distill -> fuse as four summed convs (`fold_distill_fuse`) and `FastESA`."""

    def __init__(self, block: EFDB) -> None:
        super().__init__()
        self.conv1, self.act1 = block.conv1, block.act1
        self.conv2, self.act2 = block.conv2, block.act2
        self.conv3, self.act3 = block.conv3, block.act3
        self.fuse = nn.ModuleList(fold_distill_fuse(block))
        self.esa = FastESA(block.esa)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.fuse[0](x)
        f1 = self.act1(self.conv1(x))
        fused.add_(self.fuse[1](f1))
        f2 = self.act2(self.conv2(f1))
        fused.add_(self.fuse[2](f2))
        f3 = self.act3(self.conv3(f2))
        return self.esa(fused.add_(self.fuse[3](f3))).add_(x)


def fold_efdn(net: nn.Module) -> dict[str, int]:
    """Fold a deploy-form `EFDN` in place into its inference form; returns what was folded."""
    if not isinstance(net, EFDN):
        raise TypeError(f"fold_efdn takes an EFDN, got {type(net).__name__}")
    if any(not isinstance(b.conv2, nn.Conv2d) or not isinstance(b.conv3, nn.Conv2d) for b in net.blocks):
        raise ValueError("fold_efdn needs the deploy form (plain 3x3 convs): call to_deploy_form first")
    net.blocks = nn.ModuleList(FastEFDB(b) for b in net.blocks)  # type: ignore[arg-type]
    net.fuse = nn.ModuleList(split_pair(f) for f in net.fuse)  # type: ignore[arg-type]
    return {"distill_fuse": len(net.blocks), "esa_reduce_skip": len(net.blocks), "pair_fuse": len(net.fuse)}
