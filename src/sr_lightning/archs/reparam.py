"""Structural re-parameterization, for any network.

A *re-parameterizable block* is any module with a ``reparameterize() -> nn.Module`` method that returns its
equivalent inference-time module (e.g. EDBB -> one ``nn.Conv2d``). ``reparameterize_model`` swaps every such block
for its folded form in place, so the folded network's state-dict keys are those of the deploy architecture.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import torch
from torch import nn

from sr_lightning.archs.modules import replace_submodule


def is_reparameterizable(module: nn.Module) -> bool:
    """True for modules that can fold themselves (they define ``reparameterize()``)."""
    return callable(getattr(module, "reparameterize", None)) and not isinstance(module, type)


def reparameterizable_blocks(net: nn.Module) -> list[str]:
    """Qualified names of the outermost re-parameterizable blocks of ``net``."""
    names: list[str] = []
    for name, module in net.named_modules():
        if name and is_reparameterizable(module) and not any(name.startswith(p + ".") for p in names):
            names.append(name)
    return names


def network_form(net: nn.Module) -> str:
    """``"train"`` if ``net`` still holds re-parameterizable blocks, else ``"deploy"``."""
    return "train" if reparameterizable_blocks(net) else "deploy"


def reparameterize_model(net: nn.Module) -> int:
    """Fold every re-parameterizable block of ``net`` in place; returns how many were folded."""
    names = reparameterizable_blocks(net)
    for name in names:
        block = net.get_submodule(name)
        folded = block.reparameterize()
        folded.train(block.training)
        replace_submodule(net, name, folded)
    return len(names)


def fold_state_dict(
    template: nn.Module, state_dict: Mapping[str, torch.Tensor], fold: Callable[[nn.Module], object] | None = None
) -> dict[str, torch.Tensor]:
    """A training-form state dict in deploy form: loaded (strictly) into a copy of the training-form ``template``,
    which is then folded (``fold``, default `reparameterize_model`). Lets weights saved before a fold load into the
    folded network."""
    net = copy.deepcopy(template)
    net.load_state_dict(state_dict, strict=True)
    (fold or reparameterize_model)(net)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}
