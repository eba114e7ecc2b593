"""Checks shared by the re-parameterizable block tests (test_edbb.py, test_blocks.py): random parameters, the
rounding bound of a fold (tests/_tolerance.py), and online == branch-by-branch for outputs and gradients."""

from __future__ import annotations

import copy

import torch
from _tolerance import abs_copy, assert_within, gamma, two_evaluations
from torch import nn

from sr_lightning.archs.branches import ScaledFilterBranch
from sr_lightning.archs.rep_block import RepBlock


def randomize(module: nn.Module, std: float = 1.0) -> nn.Module:
    """Every parameter ~ N(0, std^2): filter gains/biases far from their 1e-3 init, biases far from zero."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * std)
    return module


def mid(block: RepBlock) -> int:
    """Hidden width of the block's expand branch (0 without one)."""
    return block.expand.conv1x1.out_channels if "expand" in block.branch_names else 0


def n_terms(block: RepBlock) -> int:
    """Rounded operations behind one output of a B-branch block, folded or branch by branch (tests/_tolerance.py).

    Folded: kernel entries sum <= B branch kernels, the expand one a mid-term einsum (bias: 9 mid + B terms, filter
    bias 12), then the 3x3 conv (9 cin + 1). Branch by branch: expand = 1x1 conv (cin + 1) then 3x3 (9 mid + 1),
    scaled filter = 1x1 then a scaled 9-tap filter (cin + 12), then B - 1 additions across branches.
    9 (cin + mid) + 11 + B bounds both (18 for the seven-branch EDBB).
    """
    return 9 * (block.in_channels + mid(block)) + 11 + len(block.branch_names)


def abs_terms(block: RepBlock, x: torch.Tensor) -> torch.Tensor:
    """Per output, the sum of |terms| over all paths: the branch form with |parameters|, |filters|, on |x|."""
    twin = abs_copy(block)
    twin.mode = "branch"
    with torch.no_grad():
        return twin(x.abs())


def fold_error(block: RepBlock, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(branch - folded, rounding bound) on input x: two evaluations of the same multilinear map."""
    block.mode = "branch"
    with torch.no_grad():
        ref = block(x)
        folded = block.reparameterize()(x)
    return ref - folded, two_evaluations(abs_terms(block, x), n_terms(block), x.dtype)


def _inert(name: str, block: RepBlock) -> bool:
    """The 1x1 bias of a zero-sum filter branch (Sobel, Laplacian): a constant field (bias padding) mapped to 0."""
    branch = block.get_submodule(name.split(".")[0])
    return name.endswith("conv1x1.bias") and isinstance(branch, ScaledFilterBranch) and branch.filter.sum() == 0


def assert_online_matches_branch(online: RepBlock, x: torch.Tensor, target: torch.Tensor) -> None:
    """``online`` (mode "online") and its branch-by-branch twin give the same outputs and parameter gradients
    within rounding, and every parameter but the inert ones gets a gradient beyond rounding."""
    assert online.mode == "online"
    by_branch = copy.deepcopy(online)
    by_branch.mode = "branch"
    weight = torch.linspace(0.5, 2.0, x.shape[-1])
    outs = []
    for block in (online, by_branch):
        out = block(x)
        ((out - target) ** 2 * weight).mean().backward()
        outs.append(out.detach())
    n_out = n_terms(online)
    out_bound = two_evaluations(abs_terms(online, x), n_out)
    assert_within(outs[0], outs[1], out_bound, "outputs")

    # Gradients: each is a multilinear sum over the batch and the (bias-padded) pixels of dL/dout times a path
    # product; the sum of |terms| is the gradient of the |.| block on |x| for the output gradient |dL/dout|.
    # Rounding: gamma(m) of that in each form, m = forward chain + pixel sum + channel sums; and dL/dout itself
    # differs by 2 w |out difference| / numel, plus its own rounding (gamma(4)) in each form.
    grad_out = 2 * weight * (outs[1] - target) / target.numel()
    m = n_out + x.shape[0] * (x.shape[2] + 2) * (x.shape[3] + 2) + 9 * (online.in_channels + online.out_channels)
    m += 9 * mid(online)
    grad_out_bound = 2 * (gamma(m) + gamma(4)) * grad_out.abs() + 2 * weight * out_bound / target.numel()
    twin = abs_copy(by_branch)
    twin.mode = "branch"
    twin.zero_grad()
    twin(x.abs()).backward(grad_out_bound)
    bounds = dict(twin.named_parameters())
    grads = dict(by_branch.named_parameters())
    for name, p in online.named_parameters():
        ref, bound = grads[name].grad, bounds[name].grad
        assert p.grad is not None and ref is not None, name
        assert_within(p.grad, ref, bound, name)
        if _inert(name, online):
            assert (p.grad.abs() <= bound).all() and (ref.abs() <= bound).all(), name
            continue
        assert (ref.abs() > bound).any(), name  # every other branch parameter is trained (beyond rounding)
