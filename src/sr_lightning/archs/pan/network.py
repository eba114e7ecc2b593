"""PAN: Pixel Attention Network (Zhao, Kong, He, Qiao, Dong, ECCV 2020 Workshops / AIM 2020 efficient SR).

Written from the official code (zhaohengyuan1/PAN, ``codes/models/archs/PAN_arch.py`` classes ``PA``, ``PAConv``,
``SCPA``, ``PAN``) with the options of ``codes/options/train/train_PANx{2,3,4}.yml`` (nf 40, unf 24, nb 16); the
released checkpoints (``experiments/pretrained_models/PANx{2,3,4}_DF2K.pth``) decide what the network is:

    F_0 = conv3x3(x)                                    (``conv_first``, 40 channels)
    F   = F_0 + conv3x3(SCPA_16(... SCPA_1(F_0)))       (``SCPA_trunk``, ``trunk_conv``)
    U   = UPA steps: lrelu(conv3x3(lrelu(PA(conv3x3(nearest(F, s)))))), 24 channels
                                                        (``upconv1``, ``att1``, ``HRconv1``; x4: two x2 steps)
    out = conv3x3(U) + bilinear(x, s)                   (``conv_last``; the image's bilinear upscale added)

SCPA (self-calibrated block with pixel attention): two 1x1 convs split C into two C/2 paths (LeakyReLU 0.2 each);
one path is a 3x3 conv, the other PAConv (``k4(k3(x) * sigmoid(k2(x)))``: 3x3 conv weighted by a 1x1 pixel-attention
map, then a 3x3 conv); both LeakyReLU'd, concatenated and fused by a 1x1 conv, plus the block input. PA (pixel
attention): ``x * sigmoid(conv1x1(x))``.

Facts of the official code that the defaults reproduce (the paper's text was not at hand to compare line by line):
- The SCPA convs have no bias except PAConv's attention 1x1 (``k2``); every other conv has one.
- LeakyReLU slope 0.2; no activation between the nearest upsampling's conv (``upconv``) and its PA.
- The image added at the end is ``F.interpolate(x, scale_factor=s, mode='bilinear', align_corners=False)``: the
  released ``PAN_arch.py`` (commit 23914c2). An earlier version of the file (commit a209745) used
  ``align_corners=True``; the released checkpoints reproduce the reference numbers with False.
- x2 and x3 use one upsampling step of factor ``scale``, x4 two steps of x2 (``upconv2``, ``att2``, ``HRconv2``);
  the official code supports no other scale. Here a power of two 2^k >= 4 takes k steps of x2 (x4 as the official
  network) and any other scale one step (x2, x3 as the official ones): our extension, untested by any checkpoint.
- The x2 and x3 networks have identical tensors (the factor has no weights): a state dict does not show its scale.

Input/output: RGB in [0, 1] (the official code's range). No clamping (evaluation quantises).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: the official LeakyReLU slope (``nn.LeakyReLU(negative_slope=0.2)``)
LRELU_SLOPE = 0.2


def upsampling_steps(scale: int) -> tuple[int, ...]:
    """The factors of the successive nearest-neighbour upsampling steps: x4 -> (2, 2) as the official network, x2 / x3
    -> (scale,); beyond (our extension) a power of two 2^k -> k steps of 2, any other scale one step."""
    if scale < 2:
        raise ValueError(f"PAN needs an integer scale >= 2, got {scale}")
    if scale >= 4 and scale & (scale - 1) == 0:
        return (2,) * (scale.bit_length() - 1)
    return (scale,)


class PixelAttention(nn.Module):
    """PA (official ``PA``): ``x * sigmoid(conv1x1(x))``, one weight per pixel and channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class PAConv(nn.Module):
    """Official ``PAConv``: ``out(conv(x) * sigmoid(gate(x)))`` (``k4(k3(x) * sigmoid(k2(x)))``), 3x3 convs without
    bias, the 1x1 gate with one."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(channels, channels, 1)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.out = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x) * torch.sigmoid(self.gate(x)))


class SCPA(nn.Module):
    """Self-calibrated convolution block with pixel attention (official ``SCPA``, reduction 2)."""

    def __init__(self, channels: int = 40) -> None:
        super().__init__()
        half = channels // 2
        self.split_a = nn.Conv2d(channels, half, 1, bias=False)
        self.split_b = nn.Conv2d(channels, half, 1, bias=False)
        self.conv_a = nn.Conv2d(half, half, 3, padding=1, bias=False)
        self.pa_conv = PAConv(half)
        self.fuse = nn.Conv2d(2 * half, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.leaky_relu(self.conv_a(F.leaky_relu(self.split_a(x), LRELU_SLOPE)), LRELU_SLOPE)
        b = F.leaky_relu(self.pa_conv(F.leaky_relu(self.split_b(x), LRELU_SLOPE)), LRELU_SLOPE)
        return self.fuse(torch.cat([a, b], dim=1)) + x


class UPA(nn.Module):
    """One upsampling step (official ``upconv``/``att``/``HRconv``): nearest x``factor`` -> conv3x3 -> PA -> LeakyReLU
    -> conv3x3 -> LeakyReLU."""

    def __init__(self, in_channels: int, channels: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.attention = PixelAttention(channels)
        self.refine = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.interpolate(x, scale_factor=self.factor, mode="nearest"))
        return F.leaky_relu(self.refine(F.leaky_relu(self.attention(x), LRELU_SLOPE)), LRELU_SLOPE)


class PAN(nn.Module):
    """PAN with the official hyper-parameters as defaults (x2 / x3 261,403; x4 272,419 parameters).

    ``scale`` defaults to 2 (not 4): x2 and x3 state dicts do not show their scale, and detection checks that such a
    file fits the network built without one (`sr_lightning.inference.detect`), which must then have one upsampling
    step. Keys: ``head``, ``blocks.{i}.{split_a,split_b,conv_a,pa_conv.{gate,conv,out},fuse}``, ``body_conv``,
    ``up.{j}.{conv,attention.conv,refine}``, ``tail``. ``convert.convert_official`` maps the official keys onto these.
    """

    #: the upsampling steps: their number changes with the scale (x2 / x3: one, x4: two)
    upsampler_prefixes: tuple[str, ...] = ("up",)
    min_input_size: int = 1

    def __init__(
        self,
        scale: int = 2,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: int = 40,
        up_channels: int = 24,
        num_blocks: int = 16,
    ) -> None:
        super().__init__()
        if in_channels != out_channels:
            why = "PAN adds the bilinear upscale of its input to its output"
            raise ValueError(f"{why}: in_channels ({in_channels}) must equal out_channels ({out_channels})")
        self.scale = scale
        steps = upsampling_steps(scale)
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(SCPA(channels) for _ in range(num_blocks)))
        self.body_conv = nn.Conv2d(channels, channels, 3, padding=1)
        widths = [channels] + [up_channels] * len(steps)
        self.up = nn.Sequential(*(UPA(w, up_channels, f) for w, f in zip(widths, steps)))
        self.tail = nn.Conv2d(up_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.head(x)
        feat = shallow + self.body_conv(self.blocks(shallow))
        image = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.tail(self.up(feat)) + image
