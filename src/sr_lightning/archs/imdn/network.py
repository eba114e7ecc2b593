"""IMDN: Information Multi-distillation Network (Hui, Gao, Yang, Wang, ACM MM 2019), the AIM 2019 efficient-SR winner.

Written from the official code (Zheng222/IMDN, ``model/architecture.py`` class ``IMDN``, ``model/block.py``
``IMDModule`` and ``CCALayer``); the released checkpoints (``checkpoints/IMDN_x{2,3,4}.pth``) decide what the
network is:

    F_0 = conv3x3(x)                                   (``fea_conv``, 64 channels, no activation)
    B_k = IMDB(B_{k-1}), B_0 = F_0, k = 1..6           (``IMDB1``..``IMDB6``)
    F   = conv3x3(lrelu(conv1x1([B_1, ..., B_6]))) + F_0   (``c`` with its LeakyReLU, then ``LR_conv``)
    out = pixel_shuffle(conv3x3(F))                    (``upsampler``: one conv to 3 s^2 maps)

IMDB (information multi-distillation block): conv1 (C -> C), then three times: split off ``d`` distilled channels
and pass the ``C - d`` remaining ones to the next 3x3 conv (conv2, conv3: C - d -> C; conv4: C - d -> d), each conv
but the last followed by LeakyReLU(0.05); the four distilled parts are concatenated (4 d = C), weighted by the
contrast-aware channel attention (CCA) and fused by a 1x1 conv, plus the block input.

Facts of the official code that the defaults reproduce (the checkpoints were trained with them; the paper's text was
not at hand to compare line by line, so each is stated as the code has it):
- LeakyReLU slope 0.05 everywhere (``block.activation``'s default ``neg_slope``), the CCA's inner ReLU excepted.
- The fusion ``c`` after the blocks is a 1x1 conv followed by a LeakyReLU (``conv_block(act_type='lrelu')``);
  ``LR_conv`` after it has no activation.
- CCA's "contrast" is the population standard deviation per channel (divided by H W, not H W - 1), added to the
  channel mean (``stdv_channels`` + ``AdaptiveAvgPool2d``).

The 3x3 convs of each IMDB (``conv1``..``conv4``, the distillation convs) come from the ``conv3x3`` factory (None:
plain convs, the official and deploy form; e.g. ``make_edbb`` for the EDBB training form, ``model=imdn
block=edbb``). conv2..conv4 change width (C - d -> C, C - d -> d: 48 -> 64, 48 -> 16 at the official width), where
a block's identity branch cannot exist: :func:`without_identity_where_widths_differ` drops it there (as RepVGG and
``make_repvgg`` do), and conv1 (C -> C) keeps it. Every block folds into the plain conv of the official layout.

Input/output: RGB in [0, 1] (as the official training and test code). The official test clamps the output to
[0, 1]; this module does not (evaluation clamps when it quantises to uint8).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.archs.rep_block import Conv3x3Factory, plain_conv3x3

#: the official LeakyReLU slope (``block.activation``'s ``neg_slope``)
LRELU_SLOPE = 0.05


def _branches(factory: Conv3x3Factory) -> Sequence[str] | None:
    """The branch list a block factory (a function, a class or a ``functools.partial`` of one) will use: the bound
    ``branches`` keyword, else its parameter's default; None for a factory without branches (a plain conv)."""
    keywords = factory.keywords if isinstance(factory, functools.partial) else {}
    if "branches" in keywords:
        return keywords["branches"]
    try:
        param = inspect.signature(factory).parameters.get("branches")
    except (TypeError, ValueError):  # no introspectable signature
        return None
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def without_identity_where_widths_differ(factory: Conv3x3Factory, in_channels: int, out_channels: int) -> nn.Module:
    """``factory(in, out)``, with its ``identity`` branch left out when ``in != out`` (a block with branches: EDBB,
    the ``make_edbb`` variants). An identity maps C channels to themselves, so a width-changing conv has none, as
    RepVGG's ``rbr_identity`` exists only for in == out (``make_repvgg`` drops it the same way); the other branches
    stay, and the block still folds into one plain 3x3 conv of the same shape."""
    branches = _branches(factory)
    if in_channels != out_channels and branches is not None and "identity" in branches:
        factory = functools.partial(factory, branches=[b for b in branches if b != "identity"])
    return factory(in_channels, out_channels)


class ContrastChannelAttention(nn.Module):
    """CCA (official ``CCALayer``): ``x * sigmoid(expand(relu(reduce(std(x) + mean(x)))))``, per channel."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.expand = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()  # population std, as ``stdv_channels``
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(std + mean))))


class IMDB(nn.Module):
    """Information multi-distillation block (official ``IMDModule``), ``distilled`` channels split off per step."""

    def __init__(
        self, channels: int = 64, distilled: int = 16, cca_reduction: int = 16, conv3x3: Conv3x3Factory | None = None
    ) -> None:
        super().__init__()
        if not 0 < distilled < channels:
            raise ValueError(f"IMDB needs 0 < distilled channels < channels, got {distilled} of {channels}")
        make3x3 = conv3x3 or plain_conv3x3
        remaining = channels - distilled
        self.distilled = distilled
        self.conv1 = without_identity_where_widths_differ(make3x3, channels, channels)
        self.conv2 = without_identity_where_widths_differ(make3x3, remaining, channels)
        self.conv3 = without_identity_where_widths_differ(make3x3, remaining, channels)
        self.conv4 = without_identity_where_widths_differ(make3x3, remaining, distilled)
        self.cca = ContrastChannelAttention(4 * distilled, cca_reduction)
        self.fuse = nn.Conv2d(4 * distilled, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.distilled
        out = F.leaky_relu(self.conv1(x), LRELU_SLOPE)
        parts = [out[:, :d]]
        for conv in (self.conv2, self.conv3):
            out = F.leaky_relu(conv(out[:, d:]), LRELU_SLOPE)
            parts.append(out[:, :d])
        parts.append(self.conv4(out[:, d:]))  # the last step keeps all its maps, without activation
        return self.fuse(self.cca(torch.cat(parts, dim=1))) + x


class IMDN(nn.Module):
    """IMDN with the official hyper-parameters as defaults (x2 694,404; x3 703,059; x4 715,176 parameters).

    Keys: ``head``, ``blocks.{i}.{conv1,conv2,conv3,conv4,cca.reduce,cca.expand,fuse}``, ``fuse``, ``body_conv``,
    ``tail``. ``convert.convert_official`` maps the official keys onto these.
    """

    #: state-dict prefixes of the upsampler: re-initialised by `init_from` when the scale changes
    upsampler_prefixes: tuple[str, ...] = ("tail",)
    min_input_size: int = 1

    def __init__(
        self,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: int = 64,
        num_blocks: int = 6,
        distilled_channels: int | None = None,
        cca_reduction: int = 16,
        conv3x3: Conv3x3Factory | None = None,
    ) -> None:
        super().__init__()
        if scale < 1 or num_blocks < 1:
            raise ValueError(f"IMDN needs scale >= 1 and num_blocks >= 1, got scale={scale}, num_blocks={num_blocks}")
        # official: int(channels * distillation_rate) with distillation_rate = 0.25
        distilled = channels // 4 if distilled_channels is None else distilled_channels
        self.scale = scale
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.blocks = nn.ModuleList(IMDB(channels, distilled, cca_reduction, conv3x3) for _ in range(num_blocks))
        self.fuse = nn.Conv2d(num_blocks * channels, channels, 1)
        self.body_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.tail = nn.Conv2d(channels, out_channels * scale**2, 3, padding=1)
        self.upsample = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.head(x)
        outs: list[torch.Tensor] = []
        feat = shallow
        for block in self.blocks:
            feat = block(feat)
            outs.append(feat)
        body = self.body_conv(F.leaky_relu(self.fuse(torch.cat(outs, dim=1)), LRELU_SLOPE)) + shallow
        # The official test clamps to [0, 1] here; intentionally left out (see the module docstring).
        return self.upsample(self.tail(body))
