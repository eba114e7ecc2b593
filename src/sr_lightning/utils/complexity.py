"""Model complexity: parameters and multiply-accumulates, the numbers lightweight-SR papers report."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sr_lightning.archs.deploy import to_deploy_form

#: The lightweight-SR convention: MACs for producing one 1280x720 image (the LR input is 1280/s x 720/s).
HR_720P = (720, 1280)


def count_macs(net: nn.Module, scale: int, hr_size: tuple[int, int] = HR_720P, in_channels: int = 3) -> int:
    """Multiply-accumulates of one forward pass producing an `hr_size` image (LR = hr_size / scale).

    Counted on the deploy form (re-parameterizable blocks folded) with torch's FlopCounterMode (MACs = FLOPs / 2:
    convolutions and matmuls) on a meta-device copy, so nothing is computed and any input size is free.
    """
    deploy = copy.deepcopy(net)
    to_deploy_form(deploy)  # count what is deployed: EDBB branches folded into one conv, weight norm baked in
    meta = deploy.to("meta").eval()
    lr = torch.empty(1, in_channels, hr_size[0] // scale, hr_size[1] // scale, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(lr)
    return counter.get_total_flops() // 2
