"""RFDN: Residual Feature Distillation Network (Liu, Tang, Wu, ECCV 2020 Workshops), as the AIM 2020 efficient-SR
winning model that the official repository releases.

Written from the official code (njulj/RFDN, ``RFDN.py`` class ``RFDN``, ``block.py`` ``RFDB`` and ``ESA``); the
released checkpoint ``trained_model/RFDN_AIM.pth`` (x4, 433,448 parameters) decides what the network is:

    F_0 = conv3x3(x)                                     (``fea_conv``, 50 channels)
    B_k = RFDB(B_{k-1}), B_0 = F_0, k = 1..4             (``B1``..``B4``)
    F   = conv3x3(lrelu(conv1x1([B_1, ..., B_4]))) + F_0 (``c`` with its LeakyReLU, then ``LR_conv``)
    out = pixel_shuffle(conv3x3(F))                      (``upsampler``)

RFDB (residual feature distillation block): three steps, each a 1x1 "feature distillation connection" (C -> C/2,
LeakyReLU) beside a shallow residual block (SRB: ``lrelu(conv3x3(r) + r)``, C -> C); a last 3x3 conv (C -> C/2,
LeakyReLU) on the third SRB's output; the four C/2 parts concatenated, fused by a 1x1 conv (2 C -> C) and weighted by
ESA (`sr_lightning.archs.esa`, the module EFDN reuses, C/4 = 12 channels). The network reuses IMDN's frame
(``fea_conv``, ``c``, ``LR_conv``, ``upsampler``; `sr_lightning.archs.imdn`).

Facts of the official code that the defaults reproduce (the paper's text was not at hand to compare line by line):
- The released model is the AIM 2020 challenge entry (50 channels, 4 RFDBs with ESA: 433,448 parameters at x4), not
  the network of the paper's benchmark tables (534K parameters at x4). The official ``RFDN.py`` hard-codes
  ``upscale_factor=4`` (its ``upscale`` argument is ignored), so x4 is the only released scale; here ``scale`` sets
  the pixel shuffle.
- The RFDB has no residual connection around the whole block (``out_fused = esa(c5(out))``), unlike IMDN's IMDB;
  ``distillation_rate`` is an unused argument and the remaining width is C (``self.rc = in_channels``).
- Every activation is LeakyReLU(0.05) (``block.activation``'s default), ESA's inner ReLUs excepted.
- The official code runs on 0-255 values: ``test.py`` feeds uint8 values as floats (``uint2tensor4`` divides by 1.0)
  and clamps the output to [0, 255]. Here the input is multiplied by ``rgb_range`` (255) and the output divided by
  it, so the network takes and returns [0, 1] like every other one (no clamping; evaluation quantises).

The SRB convs (``srb.{0-2}``) come from the ``conv3x3`` factory (None: plain convs, the official and deploy form;
``model=rfdn block=edbb`` builds EDBBs, which fold back to the official layout). The SRB's own skip stays outside
the block: with an EDBB (identity branch included) the function is ``conv(r) + r + r`` before folding, the identity
branch folding into the conv and the SRB skip kept, so the folded network is the official RFDN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.archs.esa import ESA
from sr_lightning.archs.rep_block import Conv3x3Factory, plain_conv3x3

#: the official LeakyReLU slope (``block.activation``'s ``neg_slope``)
LRELU_SLOPE = 0.05


class RFDB(nn.Module):
    """Residual feature distillation block (official ``RFDB``), ``distilled`` channels per distillation step."""

    def __init__(
        self,
        channels: int = 50,
        distilled: int = 25,
        esa_channels: int = 12,
        conv3x3: Conv3x3Factory | None = None,
    ) -> None:
        super().__init__()
        make3x3 = conv3x3 or plain_conv3x3
        self.distill = nn.ModuleList(nn.Conv2d(channels, distilled, 1) for _ in range(3))
        self.srb = nn.ModuleList(make3x3(channels, channels) for _ in range(3))  # EDBB in the training form
        self.conv4 = nn.Conv2d(channels, distilled, 3, padding=1)
        self.fuse = nn.Conv2d(4 * distilled, channels, 1)
        self.esa = ESA(channels, esa_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        feat = x
        for distill, conv in zip(self.distill, self.srb):
            parts.append(F.leaky_relu(distill(feat), LRELU_SLOPE))
            feat = F.leaky_relu(conv(feat) + feat, LRELU_SLOPE)  # shallow residual block
        parts.append(F.leaky_relu(self.conv4(feat), LRELU_SLOPE))
        return self.esa(self.fuse(torch.cat(parts, dim=1)))  # no block-level residual (official)


class RFDN(nn.Module):
    """RFDN with the official AIM 2020 model's hyper-parameters as defaults (x4: 433,448 parameters).

    Keys: ``head``, ``blocks.{i}.{distill.{0-2},srb.{0-2},conv4,fuse,esa.*}``, ``fuse``, ``body_conv``, ``tail``.
    ``convert.convert_official`` maps the official keys onto these.
    """

    #: state-dict prefixes of the upsampler: re-initialised by `init_from` when the scale changes
    upsampler_prefixes: tuple[str, ...] = ("tail",)
    #: smallest input side: every ESA applies a 3x3 stride-2 conv (no padding) and a 7x7 max-pool (as EFDN's)
    min_input_size: int = 15

    def __init__(
        self,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: int = 50,
        num_blocks: int = 4,
        distilled_channels: int | None = None,
        esa_channels: int | None = None,
        rgb_range: float = 255.0,
        conv3x3: Conv3x3Factory | None = None,
    ) -> None:
        super().__init__()
        if scale < 1 or num_blocks < 1:
            raise ValueError(f"RFDN needs scale >= 1 and num_blocks >= 1, got scale={scale}, num_blocks={num_blocks}")
        distilled = channels // 2 if distilled_channels is None else distilled_channels  # official in_channels // 2
        esa = channels // 4 if esa_channels is None else esa_channels  # official n_feats // 4
        self.scale = scale
        self.rgb_range = float(rgb_range)
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.blocks = nn.ModuleList(RFDB(channels, distilled, esa, conv3x3) for _ in range(num_blocks))
        self.fuse = nn.Conv2d(num_blocks * channels, channels, 1)
        self.body_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.tail = nn.Conv2d(channels, out_channels * scale**2, 3, padding=1)
        self.upsample = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.head(x * self.rgb_range)  # official 0-255 convention
        outs: list[torch.Tensor] = []
        feat = shallow
        for block in self.blocks:
            feat = block(feat)
            outs.append(feat)
        body = self.body_conv(F.leaky_relu(self.fuse(torch.cat(outs, dim=1)), LRELU_SLOPE)) + shallow
        # The official test clamps to [0, 255] here; intentionally left out (evaluation quantises).
        return self.upsample(self.tail(body)) / self.rgb_range
