"""A re-parameterizable multi-branch 3x3 block: parallel linear branches, summed, that fold into one 3x3 convolution.

RepVGG, DBB, ECB (``archs/blocks.py``) and EFDN's EDBB (``archs/edbb.py``) are this block with different branch
lists (EFDN paper Fig. 2, Table 3). Branches (``branches``): ``conv3x3``, ``conv1x1``, ``identity`` (in == out),
``expand`` (1x1 -> 3x3 expand-squeeze), and the scaled fixed filters ``sobel_x``, ``sobel_y``, ``laplacian``,
``avgpool`` (1x1 -> filter times a per-channel gain, + bias). No BN, no activation inside. Every branch is linear, so
the block is one 3x3 conv whose kernel and bias are the sums of the branches' folded kernels and biases (paper eqs.
2, 4). Each branch is a sub-module named after it, in :data:`CATALOGUE` order (the state-dict keys).

Modes (training form):
- ``"branch"``: computes every branch and sums the outputs (the textbook form; slow).
- ``"online"``: builds the merged 3x3 kernel/bias from the branch parameters (differentiably) and runs ONE conv,
  so each step costs about as much as the deployed net while every branch parameter still gets its gradient.
  Same function as ``"branch"`` up to float rounding, same parameters, same state dict.
``reparameterize()`` returns the folded ``nn.Conv2d`` (``reparam.reparameterize_model`` swaps it in), using the
same merge as ``"online"``. The factories' ``mode="deploy"`` (:func:`build_block`) builds that plain conv directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.archs.branches import (
    Conv1x1Branch,
    Conv3x3Branch,
    ExpandBranch,
    IdentityBranch,
    KernelBias,
    ScaledFilterBranch,
)

#: A ``conv3x3`` option of a network (EFDN, FSRCNN, VDSR): ``factory(in_channels, out_channels)`` builds the 3x3 conv in
#: its place: a plain conv (`plain_conv3x3`, the deploy form) or any block below (``make_edbb``, ``make_repvgg``, ...).
Conv3x3Factory = Callable[[int, int], nn.Module]


def plain_conv3x3(in_channels: int, out_channels: int) -> nn.Module:
    """Default ``conv3x3`` factory: the deploy-form 3x3 convolution (stride 1, zero padding 1, bias)."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


#: Every branch a block may have, in the order they are registered (state-dict order).
CATALOGUE: tuple[str, ...] = (
    "conv3x3",
    "conv1x1",
    "identity",
    "expand",
    "sobel_x",
    "sobel_y",
    "laplacian",
    "avgpool",
)
MODES: tuple[str, ...] = ("online", "branch")


class RepBlock(nn.Module):
    """Multi-branch 3x3 block in training form (``mode`` "online" or "branch").

    Args:
        in_channels, out_channels: as for a 3x3 conv (stride 1, padding 1).
        branches: a non-empty subset of :data:`CATALOGUE`; ``"identity"`` needs ``in_channels == out_channels``.
        expand_ratio: width of the ``expand`` branch's hidden layer, as a multiple of ``out_channels``.
        mode: ``"online"`` (merged kernel, one conv) or ``"branch"`` (branch by branch); may be changed later
            by assigning ``block.mode``. For the deployed conv use :meth:`reparameterize` or :func:`build_block`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        branches: Sequence[str],
        expand_ratio: float = 2.0,
        mode: str = "online",
    ) -> None:
        super().__init__()
        names = check_branches(branches, in_channels, out_channels, type(self).__name__)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.expand_ratio = expand_ratio
        self.branch_names = names
        self.mode = mode
        for name in names:
            self.add_module(name, make_branch(name, in_channels, out_channels, expand_ratio))

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        kind = type(self).__name__
        if value == "deploy":
            raise ValueError(
                f"{kind} itself has no 'deploy' mode: fold it with {kind}.reparameterize() / "
                "reparameterize_model(net), or build the plain conv with its factory's mode='deploy' (e.g. make_edbb)"
            )
        if value not in MODES:
            raise ValueError(f"unknown {kind} mode {value!r}; choose from {MODES}")
        self._mode = value

    def branch(self, name: str) -> nn.Module:
        """The branch module called ``name`` (one of ``self.branch_names``)."""
        if name not in self.branch_names:
            raise KeyError(
                f"branch {name!r} is not enabled in this {type(self).__name__} (enabled: {self.branch_names})"
            )
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


def check_branches(
    branches: Sequence[str], in_channels: int, out_channels: int, kind: str = "RepBlock"
) -> tuple[str, ...]:
    """``branches`` in :data:`CATALOGUE` order; ``ValueError`` (naming ``kind``) on unknown, duplicate or none,
    or on ``identity`` with ``in_channels != out_channels``."""
    if isinstance(branches, str):
        branches = (branches,)
    names = tuple(branches)
    unknown = [b for b in names if b not in CATALOGUE]
    if unknown:
        raise ValueError(f"unknown {kind} branch(es) {unknown}; choose from {CATALOGUE}")
    if not names:
        raise ValueError(f"{kind} needs at least one branch out of {CATALOGUE}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate {kind} branches in {list(names)}")
    if "identity" in names and in_channels != out_channels:
        raise ValueError(
            f"{kind} 'identity' branch needs in_channels == out_channels, got {in_channels} -> {out_channels}; "
            "leave 'identity' out of branches"
        )
    return tuple(b for b in CATALOGUE if b in names)


def make_branch(name: str, in_channels: int, out_channels: int, expand_ratio: float) -> nn.Module:
    """The branch module called ``name`` (one of :data:`CATALOGUE`)."""
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
    return ScaledFilterBranch(in_channels, out_channels, name)


def build_block(
    cls: type[RepBlock],
    in_channels: int,
    out_channels: int,
    branches: Sequence[str],
    expand_ratio: float = 2.0,
    mode: str = "online",
) -> nn.Module:
    """``cls(in, out, branches, expand_ratio, mode)``, or for ``mode="deploy"`` the plain
    ``nn.Conv2d(in, out, 3, padding=1)`` it folds into (same argument checks either way)."""
    if mode == "deploy":
        check_branches(branches, in_channels, out_channels, cls.__name__)
        return nn.Conv2d(in_channels, out_channels, 3, padding=1)
    return cls(in_channels, out_channels, branches=branches, expand_ratio=expand_ratio, mode=mode)


def set_block_mode(net: nn.Module, mode: str, kind: type[RepBlock] = RepBlock) -> int:
    """Switch every ``kind`` block (default: every :class:`RepBlock`) inside ``net`` to ``mode`` ("online" or
    "branch"); returns how many."""
    blocks = [m for m in net.modules() if isinstance(m, kind)]
    for block in blocks:
        block.mode = mode
    return len(blocks)
