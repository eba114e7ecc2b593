"""Network forms, in one place: the training form (re-parameterizable blocks, weight-normalised convs) and the
deploy form (everything folded), and every move between them.

- `network_form`, `has_training_form`: which form a network is in;
- `to_deploy_form` (`reparameterize_model` + `fold_weight_norm`): fold a network in place (outputs unchanged up to
  float rounding);
- `fit_state_dict`: a state dict of either form, in our or the official key naming, fitted to a network of either
  form (a deploy-form state dict folds the network; a training-form one is folded through a template);
- `fold_state_dict`, `fold_prefixed`: a training-form state dict folded through a training-form template (a Lightning
  checkpoint's ``net.`` entries too);
- `training_form`: the training form of a network given folded (for complexity reports), from its model config.

Every other module (weights loading, checkpoints, callbacks, profiling) calls these; none folds on its own.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from sr_lightning.archs.catalog import architecture_by_target, architecture_of
from sr_lightning.archs.model_config import build_network
from sr_lightning.archs.weight_norm import has_weight_norm

StateDict = dict[str, torch.Tensor]
NET_PREFIX = "net."  # where `SRModule` keeps its network in Lightning checkpoints


# -- module surgery -------------------------------------------------------------------------------------------------
def replace_submodule(net: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` in place of the submodule of ``net`` at the dotted ``name``; returns the module it replaced."""
    if not name:
        raise ValueError("replace_submodule cannot replace the root module itself; replace it in its parent")
    parent_name, _, attr = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    old = parent.get_submodule(attr)
    setattr(parent, attr, new)
    return old


def _outermost(names: list[str]) -> list[str]:
    kept: list[str] = []
    for name in names:
        if not any(name.startswith(p + ".") for p in kept):
            kept.append(name)
    return kept


# -- which form -----------------------------------------------------------------------------------------------------
def is_reparameterizable(module: nn.Module) -> bool:
    """True for modules that can fold themselves (they define ``reparameterize() -> nn.Module``)."""
    return callable(getattr(module, "reparameterize", None)) and not isinstance(module, type)


def reparameterizable_blocks(net: nn.Module) -> list[str]:
    """Qualified names of the outermost re-parameterizable blocks of ``net``."""
    return _outermost([name for name, m in net.named_modules() if name and is_reparameterizable(m)])


def weight_normed_convs(net: nn.Module) -> list[str]:
    """Qualified names of the outermost modules of ``net`` whose weight is weight-normalised."""
    return _outermost([name for name, m in net.named_modules() if name and has_weight_norm(m)])


def network_form(net: nn.Module) -> str:
    """``"train"`` if ``net`` still holds re-parameterizable blocks, else ``"deploy"`` (what checkpoints record as
    ``sr_form``: weight norm does not change the state-dict keys a checkpoint is matched by)."""
    return "train" if reparameterizable_blocks(net) else "deploy"


def has_training_form(net: nn.Module) -> bool:
    """True when ``net`` holds something the deploy form folds (re-parameterizable blocks, weight norm)."""
    return bool(reparameterizable_blocks(net) or weight_normed_convs(net))


# -- folding a network ----------------------------------------------------------------------------------------------
def reparameterize_model(net: nn.Module) -> int:
    """Fold every re-parameterizable block of ``net`` in place (its deploy keys); returns how many were folded."""
    names = reparameterizable_blocks(net)
    for name in names:
        block = net.get_submodule(name)
        folded = block.reparameterize()
        folded.train(block.training)
        replace_submodule(net, name, folded)
    return len(names)


def fold_weight_norm(net: nn.Module) -> int:
    """Bake every weight-norm parametrization of ``net`` in (a plain ``weight`` per module, same function); tensors
    with other parametrizations are left alone. Returns the number folded."""
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


def to_deploy_form(net: nn.Module) -> dict[str, int]:
    """Fold `net` in place for inference: every EDBB-like block into one conv, every weight-normalised conv into a
    plain one. Outputs are unchanged (up to float rounding). Returns how many of each were folded."""
    return {"reparameterized": reparameterize_model(net), "weight_norm": fold_weight_norm(net)}


# -- state dicts of either form -------------------------------------------------------------------------------------
def strip_prefix(state_dict: Mapping[str, Any], prefix: str = NET_PREFIX) -> dict[str, Any]:
    """The entries under ``prefix`` (e.g. a Lightning checkpoint's network), without it."""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if isinstance(k, str) and k.startswith(prefix)}


def fold_state_dict(
    template: nn.Module, state_dict: Mapping[str, torch.Tensor], fold: Callable[[nn.Module], object] | None = None
) -> StateDict:
    """A training-form state dict in deploy form: loaded (strictly) into a copy of the training-form ``template``,
    which is then folded (``fold``, default `reparameterize_model`)."""
    net = copy.deepcopy(template)
    net.load_state_dict(state_dict, strict=True)
    (fold or reparameterize_model)(net)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def fold_prefixed(state_dict: Mapping[str, torch.Tensor], template: nn.Module, prefix: str = NET_PREFIX) -> StateDict:
    """A module state dict whose ``prefix`` entries are a training-form network, those entries folded."""
    rest = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
    folded = fold_state_dict(template, strip_prefix(state_dict, prefix))
    return {**{prefix + k: v for k, v in folded.items()}, **rest}


def _fit_keys(net: nn.Module, sd: Mapping[str, torch.Tensor]) -> StateDict | None:
    """``sd`` in ``net``'s key naming (converted from the official one if need be), or None if it can't fit."""
    own = set(net.state_dict())
    if set(sd) == own:
        return dict(sd)
    arch = architecture_of(net)
    if arch is not None and arch.convert_official is not None:
        with contextlib.suppress(ValueError):
            converted = arch.convert_official(dict(sd))
            if set(converted) == own:
                return converted
    return None


def fit_state_dict(
    net: nn.Module, sd: Mapping[str, torch.Tensor], train_config: Mapping[str, Any] | None = None
) -> StateDict | None:
    """``sd`` (either form, our or the official naming) fitted to ``net`` (either form), or None.

    A deploy-form ``sd`` for a training-form ``net`` folds ``net`` in place; a training-form ``sd`` for a folded
    ``net`` is folded through the network of ``train_config`` (the checked model config saved with the weights)."""
    fitted = _fit_keys(net, sd)
    if fitted is None:
        folded = copy.deepcopy(net)
        if any(to_deploy_form(folded).values()) and _fit_keys(folded, sd) is not None:
            to_deploy_form(net)
            fitted = _fit_keys(net, sd)
    if fitted is None and train_config is not None:
        template = build_network(train_config)
        template_sd = _fit_keys(template, sd)
        if template_sd is not None:
            return fit_state_dict(net, fold_state_dict(template, template_sd, fold=to_deploy_form))
    return fitted


# -- the training form of a folded network (complexity reports) ----------------------------------------------------
def packaged_training_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], str] | None:
    """``config`` with its network's training-form options (`Architecture.training_options`, the same as its
    packaged ``conf/model/<name>.yaml``: tests/test_catalog.py) where ``config`` leaves them null (EFDN's detected
    deploy form is ``conv3x3: null``), and where that came from. None for a network outside the catalog."""
    target = config.get("_target_")
    arch = architecture_by_target(target) if isinstance(target, str) else None
    if arch is None:
        return None
    merged = {**config, **{k: v for k, v in arch.training_options.items() if config.get(k) is None}}
    return merged, f"conf/model/{arch.name.lower()}.yaml"


def _shapes(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def training_form_from_config(config: Mapping[str, Any], deploy: nn.Module) -> tuple[nn.Module, str] | None:
    """The training-form network (unloaded) of ``config`` or of its packaged config, whichever folds into exactly
    ``deploy``'s state-dict shapes, and which it was; None if neither does."""
    candidates = [(dict(config), "its model config"), packaged_training_config(config)]
    for candidate, source in filter(None, candidates):
        train = build_network(candidate)
        if has_training_form(train):
            folded = copy.deepcopy(train)
            to_deploy_form(folded)
            if _shapes(folded) == _shapes(deploy):
                return train, source
    return None


def training_form(net: nn.Module, train_net: nn.Module | None = None) -> tuple[nn.Module, str]:
    """The training form of ``net`` and where it came from: ``train_net`` if given; ``net`` itself when it still
    holds what folds; else `training_form_from_config` of the model config that `load_model` attaches
    (``net.sr_meta["model"]``); else ``net`` (nothing is known to fold)."""
    if train_net is not None:
        return train_net, "given"
    if has_training_form(net):
        return net, "the network as given"
    config = (getattr(net, "sr_meta", None) or {}).get("model")
    found = training_form_from_config(config, net) if isinstance(config, Mapping) else None
    if found is not None:
        return found[0], f"architecture of {found[1]} (sr_meta), weights not loaded"
    return net, "the network as given (nothing to fold)"
