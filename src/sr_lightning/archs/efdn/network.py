"""EFDN: Edge-enhanced Feature Distillation Network (Yan Wang, CVPRW 2022 / NTIRE 2022 ESR), deploy form.

Written from the official code (icandle/EFDN, models/EFDN_deploy.py). The training form replaces the 3x3
convolutions inside each EFDB (official ``conv2.rep_conv`` / ``conv3.rep_conv``) by re-parameterizable EDBB
blocks; pass a factory as ``conv3x3`` for that (``sr_lightning.archs.edbb.make_edbb`` / ``EDBB``, e.g.
``functools.partial(EDBB, mode="online")``; conf/model/efdn.yaml selects it). Once such a block is folded into
a plain ``nn.Conv2d`` sitting in the same attribute, the state dict is that of the deploy form.

Input/output: RGB in [0, 1]. The official forward ends with ``out.clamp(0, 1)``; this module does NOT clamp
(training needs the gradient everywhere; evaluation clamps when it quantises to uint8, which gives the same
numbers). Inputs must be at least 15x15 pixels (the ESA block's stride-2 conv + 7x7 max-pool).
"""

from __future__ import annotations

import torch
from torch import nn

from sr_lightning.archs.esa import ESA
from sr_lightning.archs.rep_block import Conv3x3Factory, plain_conv3x3


class EFDB(nn.Module):
    """Edge-enhanced feature distillation block (official ``Cell``).

    conv1 (1x1) -> conv2 (3x3) -> conv3 (3x3), each followed by a per-channel PReLU; the block input and the
    three intermediate features are each distilled by a 1x1 conv to C/2 channels, concatenated, fused by a
    1x1 conv back to C, passed through ESA, and added to the block input.
    """

    def __init__(self, channels: int = 48, esa_channels: int = 12, conv3x3: Conv3x3Factory | None = None) -> None:
        super().__init__()
        make3x3 = conv3x3 or plain_conv3x3
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.act1 = nn.PReLU(channels)
        self.conv2 = make3x3(channels, channels)  # EDBB in the training form
        self.act2 = nn.PReLU(channels)
        self.conv3 = make3x3(channels, channels)  # EDBB in the training form
        self.act3 = nn.PReLU(channels)
        self.distill = nn.ModuleList(nn.Conv2d(channels, channels // 2, 1) for _ in range(4))
        self.fuse = nn.Conv2d(4 * (channels // 2), channels, 1)
        self.esa = ESA(channels, esa_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.act1(self.conv1(x))
        f2 = self.act2(self.conv2(f1))
        f3 = self.act3(self.conv3(f2))
        distilled = [d(f) for d, f in zip(self.distill, (x, f1, f2, f3))]
        return self.esa(self.fuse(torch.cat(distilled, dim=1))) + x


class PairConv(nn.Module):
    """A 1x1 conv of the concatenation ``[a, b]`` written as ``first(a) + second(b)`` (no concatenation copy): the
    inference form of the block fusions H_j (fast.py builds it; `fuse_pair` calls either form)."""

    def __init__(self, first: nn.Conv2d, second: nn.Conv2d) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.first(a).add_(self.second(b))


def fuse_pair(fuse: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """H[a, b]: ``fuse`` (a 1x1 conv) of the channel concatenation, or a `PairConv` of the pair."""
    return fuse(a, b) if isinstance(fuse, PairConv) else fuse(torch.cat([a, b], dim=1))


class EFDN(nn.Module):
    """EFDN with the official hyper-parameters as defaults (x4: 276,192 parameters).

    Keys: ``head``, ``blocks.{i}.{conv1,act1,conv2,act2,conv3,act3,distill.{0-3},fuse,esa.*}``,
    ``fuse.{j}``, ``tail``. ``convert.convert_official`` maps the official deploy keys onto these.
    """

    #: state-dict prefixes of the upsampler: re-initialised by `init_from` when the scale changes
    upsampler_prefixes: tuple[str, ...] = ("tail",)
    #: smallest input side (pixels) the network accepts, found by running it: every ESA applies a 3x3 stride-2 conv
    #: (no padding) and a 7x7 max-pool, so (n - 3) // 2 + 1 >= 7, i.e. n >= 15 (14 fails, in either dimension).
    min_input_size: int = 15

    def __init__(
        self,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: int = 48,
        num_blocks: int = 4,
        esa_channels: int = 12,
        conv3x3: Conv3x3Factory | None = None,
    ) -> None:
        super().__init__()
        if num_blocks < 3:
            raise ValueError(f"EFDN needs num_blocks >= 3 for its block-fusion topology, got {num_blocks}")
        self.scale = scale
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.blocks = nn.ModuleList(EFDB(channels, esa_channels, conv3x3) for _ in range(num_blocks))
        # num_blocks - 2 fusions feeding blocks 3..N, plus the final one.
        self.fuse = nn.ModuleList(nn.Conv2d(2 * channels, channels, 1) for _ in range(num_blocks - 1))
        self.tail = nn.Conv2d(channels, out_channels * scale**2, 3, padding=1)
        self.upsample = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # NAS-searched block connections (paper eq. 6; official ``local_fuse`` wiring, 4 blocks):
        #   B1 = EFDB1(F0), B2 = EFDB2(B1), B3 = EFDB3(H1[B1, B2]), B4 = EFDB4(H2[B2, B3]),
        #   F  = H3[B2, B4] + F0,   with H_j a 1x1 conv on the channel concatenation [., .].
        # This is the official forward, which produced the released weights (it reproduces the reference
        # Set5/Set14 PSNR exactly). Note the output fusion pairs B2, not B3, with B4. For num_blocks != 4 the
        # pattern is extended (our choice): block k >= 3 gets H[B_{k-2}, B_{k-1}], the output H[B2, B_N].
        shallow = self.head(x)
        outs: list[torch.Tensor] = []
        feat = shallow
        for k, block in enumerate(self.blocks):
            if k >= 2:
                feat = fuse_pair(self.fuse[k - 2], outs[k - 2], outs[k - 1])
            outs.append(block(feat))
            feat = outs[-1]
        body = fuse_pair(self.fuse[-1], outs[1], outs[-1]) + shallow
        # The official forward clamps to [0, 1] here; intentionally left out (see the module docstring).
        return self.upsample(self.tail(body))
