"""Weight normalisation helpers (Salimans & Kingma 2016: w = g * v / ||v||), for any network.

Networks here use the parametrization API, ``torch.nn.utils.parametrizations.weight_norm``: a normalised conv
keeps ``g`` and ``v`` as ``parametrizations.weight.original0`` / ``original1`` and recomputes ``weight`` on every
access. Older checkpoints (the deprecated ``torch.nn.utils.weight_norm``) name them ``weight_g`` / ``weight_v``;
``LEGACY_NAMES`` maps those names. :func:`fold_weight_norm` bakes the current weights in and
removes the parametrizations (faster inference, plain export; the state dict then holds ``weight``).
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from sr_lightning.archs.modules import replace_submodule

#: legacy `torch.nn.utils.weight_norm` tensor names -> the parametrization API's names
LEGACY_NAMES: dict[str, str] = {
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
}


def weight_normed(module: nn.Module, dim: int = 0) -> nn.Module:
    """``module`` with its ``weight`` weight-normalised (norm over all dims but ``dim``, as the legacy default)."""
    return weight_norm(module, name="weight", dim=dim)


def _is_weight_norm(p: nn.Module) -> bool:
    # The parametrization class is private (torch.nn.utils.parametrizations._WeightNorm): match it by name.
    return type(p).__name__ == "_WeightNorm"


def has_weight_norm(module: nn.Module) -> bool:
    """True if ``module.weight`` is parametrized by weight normalisation alone."""
    plist = getattr(getattr(module, "parametrizations", None), "weight", None)
    return plist is not None and len(plist) == 1 and _is_weight_norm(plist[0])


def fold_weight_norm(net: nn.Module) -> int:
    """Remove every weight-norm parametrization of ``net`` in place, keeping the current weight values.

    Afterwards each such module holds a plain ``weight`` parameter (state-dict key ``<module>.weight``) and computes
    the same function. Tensors carrying other parametrizations (alone or chained with weight norm) are left alone.
    Returns the number of folded tensors.
    """
    # Each module is *replaced* by an unparametrized twin instead of `parametrize.remove_parametrizations`: the
    # latter edits the module's dynamically created class, which `copy.deepcopy` shares between copies, so folding
    # a copy (for export or MAC counting) would break the original network.
    names = [name for name, module in net.named_modules() if name and has_weight_norm(module)]
    for name in names:
        replace_submodule(net, name, _without_weight_norm(net.get_submodule(name)))
    if has_weight_norm(net):
        raise ValueError("fold_weight_norm cannot replace the root module itself; fold its parent instead")
    return len(names)


def _without_weight_norm(module: nn.Module) -> nn.Module:
    """A plain module of the original class sharing everything with `module` but holding `weight` as a parameter."""
    weight = module.weight.detach().clone()
    cls = parametrize.type_before_parametrizations(module)
    plain = cls.__new__(cls)
    plain.__dict__.update(module.__dict__)  # hyper-parameters, bias, hooks (copy.copy refuses parametrized modules)
    plain._parameters = {**module._parameters, "weight": nn.Parameter(weight, requires_grad=weight.requires_grad)}
    plain._modules = {k: v for k, v in module._modules.items() if k != "parametrizations"}
    plain._buffers = dict(module._buffers)
    return plain
