"""EDBB: the edge-enhanced diverse branch block of EFDN (Wang, NTIRE 2022 ESR, Fig. 2b, Sec. 3.1).

Seven parallel branches, summed (no BN, no activation inside; EFDN applies PReLU after the block):
``conv3x3``, ``conv1x1``, ``identity`` (in == out), ``expand`` (1x1 -> 3x3 expand-squeeze), and ``sobel_x``,
``sobel_y``, ``laplacian`` (1x1 -> fixed edge filter times a per-channel gain, + bias); see ``edbb_branches``.
All are linear, so the block equals one 3x3 convolution whose kernel and bias are the sums of the branches' folded
kernels and biases.

Modes (training form):
- ``"branch"``: computes every branch and sums the outputs (the textbook form; slow).
- ``"online"``: builds the merged 3x3 kernel/bias from the branch parameters (differentiably) and runs ONE conv,
  so each step costs about as much as the deployed net while every branch parameter still gets its gradient.
  Same function as ``"branch"`` up to float rounding, same parameters, same state dict.
``reparameterize()`` returns the folded ``nn.Conv2d`` (``reparam.reparameterize_model`` swaps it in), using the
same merge as ``"online"``. ``make_edbb(..., mode="deploy")`` builds that plain conv directly.

Differences from the official code (icandle/EFDN ``models/unitv2.py``), on purpose:
- Branches: the official ``EDBB`` enables five by default (3x3, 1x1, the three edge branches; the 1x1->3x3
  ``with_13`` and the identity ``with_idt`` are off). We default to the paper's seven.
- Its ``gv`` mode runs 3x3 + edge branches + x, but its ``switch_to_deploy`` adds the identity only when
  ``with_idt`` is set, so a ``gv`` block folds to a conv that lacks the identity. Here the fold always
  contains exactly the enabled branches.
- Expand width: mid = int(out_channels * expand_ratio) as in the official ``depth_multiplier``, whose ``EDBB``
  default (``None`` -> in_channels, i.e. mid = in * out) is unused there; its commented ``Cell`` line and ECBSR
  use 2.0, which is our default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.archs.edbb_branches import (
    Conv1x1Branch,
    Conv3x3Branch,
    EdgeBranch,
    ExpandBranch,
    IdentityBranch,
    KernelBias,
)

BRANCHES: tuple[str, ...] = ("conv3x3", "conv1x1", "identity", "expand", "sobel_x", "sobel_y", "laplacian")
MODES: tuple[str, ...] = ("online", "branch")


class EDBB(nn.Module):
    """Edge-enhanced diverse branch block, in training form (``mode`` "online" or "branch").

    Args:
        in_channels, out_channels: as for a 3x3 conv (stride 1, padding 1).
        branches: any non-empty subset of :data:`BRANCHES` (default: all seven, the paper's block).
            ``"identity"`` needs ``in_channels == out_channels``.
        expand_ratio: width of the ``expand`` branch's hidden layer, as a multiple of ``out_channels``.
        mode: ``"online"`` (merged kernel, one conv) or ``"branch"`` (branch by branch); may be changed later
            by assigning ``block.mode``. For the deployed conv use :meth:`reparameterize` or :func:`make_edbb`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        branches: Sequence[str] = BRANCHES,
        expand_ratio: float = 2.0,
        mode: str = "online",
    ) -> None:
        super().__init__()
        names = _check_branches(branches, in_channels, out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.expand_ratio = expand_ratio
        self.branch_names = names
        self.mode = mode
        for name in names:
            self.add_module(name, _make_branch(name, in_channels, out_channels, expand_ratio))

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value == "deploy":
            raise ValueError(
                "EDBB itself has no 'deploy' mode: fold it with EDBB.reparameterize() / reparameterize_model(net), "
                "or build the plain conv with make_edbb(..., mode='deploy')"
            )
        if value not in MODES:
            raise ValueError(f"unknown EDBB mode {value!r}; choose from {MODES}")
        self._mode = value

    def branch(self, name: str) -> nn.Module:
        """The branch module called ``name`` (one of ``self.branch_names``)."""
        if name not in self.branch_names:
            raise KeyError(f"branch {name!r} is not enabled in this EDBB (enabled: {self.branch_names})")
        return self.get_submodule(name)

    def merged_kernel_bias(self) -> KernelBias:
        """The (out, in, 3, 3) kernel and (out,) bias of the equivalent 3x3 conv, differentiable (the one fold)."""
        kernel, bias = None, None
        for name in self.branch_names:
            k, b = self.branch(name).kernel_bias()
            kernel = k if kernel is None else kernel + k
            bias = b if bias is None else bias + b
        assert kernel is not None and bias is not None  # at least one branch, checked in __init__
        return kernel, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._mode == "online":
            kernel, bias = self.merged_kernel_bias()
            return F.conv2d(x, kernel, bias, padding=1)
        out = None
        for name in self.branch_names:
            y = self.branch(name)(x)
            out = y if out is None else out + y
        return out

    def reparameterize(self) -> nn.Conv2d:
        """The equivalent plain ``nn.Conv2d(in, out, 3, padding=1)`` (new module, detached parameters)."""
        with torch.no_grad():
            kernel, bias = self.merged_kernel_bias()
            conv = nn.Conv2d(
                self.in_channels, self.out_channels, 3, padding=1, device=kernel.device, dtype=kernel.dtype
            )
            conv.weight.copy_(kernel)
            conv.bias.copy_(bias)
        return conv

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, mode={self._mode!r}, branches={list(self.branch_names)}"


def _check_branches(branches: Sequence[str], in_channels: int, out_channels: int) -> tuple[str, ...]:
    if isinstance(branches, str):
        branches = (branches,)
    names = tuple(branches)
    unknown = [b for b in names if b not in BRANCHES]
    if unknown:
        raise ValueError(f"unknown EDBB branch(es) {unknown}; choose from {BRANCHES}")
    if not names:
        raise ValueError(f"EDBB needs at least one branch out of {BRANCHES}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate EDBB branches in {list(names)}")
    if "identity" in names and in_channels != out_channels:
        raise ValueError(
            f"EDBB 'identity' branch needs in_channels == out_channels, got {in_channels} -> {out_channels}; "
            "leave 'identity' out of branches"
        )
    return tuple(b for b in BRANCHES if b in names)  # canonical order


def _make_branch(name: str, in_channels: int, out_channels: int, expand_ratio: float) -> nn.Module:
    if name == "conv3x3":
        return Conv3x3Branch(in_channels, out_channels)
    if name == "conv1x1":
        return Conv1x1Branch(in_channels, out_channels)
    if name == "identity":
        return IdentityBranch(out_channels)
    if name == "expand":
        mid = int(out_channels * expand_ratio)
        if mid < 1:
            raise ValueError(f"expand_ratio={expand_ratio} gives no hidden channels for out_channels={out_channels}")
        return ExpandBranch(in_channels, out_channels, mid)
    return EdgeBranch(in_channels, out_channels, name)


def make_edbb(
    in_channels: int,
    out_channels: int,
    branches: Sequence[str] = BRANCHES,
    expand_ratio: float = 2.0,
    mode: str = "online",
) -> nn.Module:
    """``conv3x3`` factory for EFDN: an :class:`EDBB` ("online" / "branch"), or for ``mode="deploy"`` the plain
    ``nn.Conv2d(in, out, 3, padding=1)`` that an EDBB folds into (deploy state-dict keys)."""
    if mode == "deploy":
        _check_branches(branches, in_channels, out_channels)  # same errors whatever the mode
        return nn.Conv2d(in_channels, out_channels, 3, padding=1)
    return EDBB(in_channels, out_channels, branches=branches, expand_ratio=expand_ratio, mode=mode)


def set_edbb_mode(net: nn.Module, mode: str) -> int:
    """Switch every EDBB inside ``net`` to ``mode`` ("online" or "branch"); returns how many were switched."""
    blocks = [m for m in net.modules() if isinstance(m, EDBB)]
    for block in blocks:
        block.mode = mode
    return len(blocks)
