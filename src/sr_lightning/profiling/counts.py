"""Operation and activation counts of one forward pass, on a meta-device copy (nothing is computed).

Conventions (each figure is labelled with its own in the reports):
- **MACs**: one multiply-add = one operation, counted by torch's ``FlopCounterMode`` (which counts 2 FLOPs per
  multiply-add; its total is halved here). Convolutions and matrix products only; element-wise ops, pooling,
  interpolation and pixel shuffle are not counted, nor are conv biases. The NTIRE efficient-SR challenge calls this
  number "FLOPs" (for a 256x256 LR input); the lightweight-SR papers call it "MACs" (for a 1280x720 output).
- **Activations** (NTIRE): the sum of the output elements of every ``nn.Conv2d`` / ``nn.ConvTranspose2d`` call,
  counted by forward hooks, so a module called twice (FDIWN's shared FSWGs) counts twice. A re-parameterizable
  block (EDBB: any module with ``reparameterize()``) counts as ONE conv call, its output, whatever its mode (its
  "online" mode runs ``F.conv2d`` with a merged kernel, its "branch" mode several branch convs): the block stands
  for the one conv it folds into, and its inner convs are not counted.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.hooks import RemovableHandle

from sr_lightning.archs.forms import reparameterizable_blocks, to_deploy_form

#: The lightweight-SR papers' convention: MACs for producing one 1280x720 image (LR = 720/s x 1280/s, floored).
HR_720P: tuple[int, int] = (720, 1280)
#: The NTIRE efficient-SR convention: FLOPs and activations for a 256x256 LR input.
LR_256: tuple[int, int] = (256, 256)
#: The layers whose outputs are activations (NTIRE's ``get_model_activation`` hooks these two).
CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.ConvTranspose2d)


def size_pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``256`` -> ``(256, 256)``; ``(h, w)`` / ``[h, w]`` as they are."""
    if isinstance(size, int):
        return size, size
    h, w = (int(s) for s in size)
    return h, w


def lr_size_for(hr_size: tuple[int, int], scale: int) -> tuple[int, int]:
    """The LR input that gives an ``hr_size`` output at ``scale`` (floored: x3 720p -> 240x426)."""
    return hr_size[0] // scale, hr_size[1] // scale


@dataclass(frozen=True)
class ConvCounts:
    """Counts of one forward pass on a ``1 x C x H x W`` input (see the module doc for the conventions)."""

    lr_size: tuple[int, int]
    macs: int
    activations: int
    conv_calls: int
    #: MACs by module FQN (``""`` the root), each module's own and its children's, summed over all its calls
    macs_by_module: dict[str, int] = field(repr=False)


class _ConvOutputs:
    """Forward hooks summing the output elements of every conv call (re-parameterizable blocks as one conv)."""

    def __init__(self, net: nn.Module) -> None:
        self.elements = 0
        self.calls = 0
        self._handles: list[RemovableHandle] = []
        blocks = reparameterizable_blocks(net)
        for name, module in net.named_modules():  # each instance once: a shared module's hook fires per call
            if any(name.startswith(b + ".") for b in blocks):
                continue  # a branch of a re-parameterizable block: the block counts instead
            if name in blocks or isinstance(module, CONV_TYPES):
                self._handles.append(module.register_forward_hook(self._hook))

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.elements += output.numel()
        self.calls += 1

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def meta_copy(net: nn.Module) -> nn.Module:
    """A copy of ``net`` on the meta device, in eval mode: shapes without data, so any input size is free."""
    return copy.deepcopy(net).to("meta").eval()


def count_convs(net: nn.Module, lr_size: tuple[int, int] = LR_256, in_channels: int = 3) -> ConvCounts:
    """MACs and activations of one forward pass of ``net`` (in the form it is given) on a ``lr_size`` input."""
    meta = meta_copy(net)
    counter = FlopCounterMode(display=False)
    outputs = _ConvOutputs(meta)
    x = torch.empty(1, in_channels, *lr_size, device="meta")
    try:
        with counter, torch.no_grad():
            meta(x)
    finally:
        outputs.remove()
    return ConvCounts(
        lr_size=tuple(lr_size),
        macs=counter.get_total_flops() // 2,
        activations=outputs.elements,
        conv_calls=outputs.calls,
        macs_by_module=_by_fqn(meta, counter.get_flop_counts()),
    )


def _by_fqn(net: nn.Module, flop_counts: dict[str, dict]) -> dict[str, int]:
    """FlopCounterMode's per-module FLOPs keyed by module FQN, in MACs.

    Its module tracker names the root by its class (``EFDN``) and every other module ``<root>.<fqn>``; a module
    collects the FLOPs of every op run while it is on the stack (its own and its children's), over all its calls.
    A module reachable under several names is counted once, under one of them: every alias gets that count."""
    root = type(net).__name__
    tracked = {("" if k == root else k.removeprefix(root + ".")): sum(ops.values()) // 2
               for k, ops in flop_counts.items() if k == root or k.startswith(root + ".")}  # fmt: skip
    by_module: dict[str, int] = {}
    aliases: dict[int, list[str]] = {}
    for name, module in net.named_modules(remove_duplicate=False):
        aliases.setdefault(id(module), []).append(name)
    for names in aliases.values():
        count = next((tracked[n] for n in names if n in tracked), 0)  # absent: never called, or no counted op
        by_module.update(dict.fromkeys(names, count))
    return by_module


def _inside(name: str, parent: str) -> bool:
    """True when the module FQN ``name`` is nested in ``parent`` (``""``, the root, holds every other module)."""
    return name != parent and (parent == "" or name.startswith(parent + "."))


def outermost(names: list[str]) -> list[str]:
    """``names`` (FQNs) without those nested in another of them (their MACs are already in their parent's)."""
    unique = list(dict.fromkeys(names))
    return [n for n in unique if not any(_inside(n, p) for p in unique)]


def macs_of(counts: ConvCounts, names: list[str]) -> int:
    """MACs spent inside the modules ``names`` (FQNs; nested ones are not counted twice), all calls included."""
    missing = [n for n in names if n not in counts.macs_by_module]
    if missing:
        raise KeyError(f"no module named {missing[:3]} in the counted network")
    return sum(counts.macs_by_module[n] for n in outermost(names))


def count_macs(net: nn.Module, scale: int, hr_size: tuple[int, int] = HR_720P, in_channels: int = 3) -> int:
    """Multiply-accumulates of one forward pass producing an `hr_size` image (LR = hr_size / scale, floored).

    Counted on the deploy form (re-parameterizable blocks folded, weight norm baked in: what is deployed) with
    torch's FlopCounterMode (MACs = FLOPs / 2: convolutions and matmuls) on a meta-device copy, so nothing is
    computed and any input size is free.
    """
    deploy = meta_copy(net)
    to_deploy_form(deploy)  # folds shapes only: on the meta device nothing is computed
    return count_convs(deploy, lr_size_for(hr_size, scale), in_channels).macs
