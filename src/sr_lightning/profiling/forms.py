"""The training form of a network, whatever form it is given in (complexity is reported for both forms).

The training form holds what the deploy form folds: re-parameterizable blocks (EDBB) and weight-normalised convs.
A network given folded (an official EFDN checkpoint is the deploy form) gets its training form back from its model
config: the config itself when it describes the training form, else the catalog's training form of that network
(`Architecture.training_options`) under the hyper-parameters read from the file. Either is kept only if it folds
into the given network's shapes. Its weights are not loaded: counts do not depend on weight values.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import nn

from sr_lightning.archs.catalog import architecture_by_target
from sr_lightning.archs.deploy import to_deploy_form
from sr_lightning.archs.model_config import build_network
from sr_lightning.archs.reparam import reparameterizable_blocks
from sr_lightning.archs.weight_norm import has_weight_norm
from sr_lightning.profiling.counts import outermost


def weight_normed_convs(net: nn.Module) -> list[str]:
    """FQNs of the outermost modules of ``net`` whose weight is weight-normalised."""
    return outermost([name for name, m in net.named_modules() if name and has_weight_norm(m)])


def has_training_form(net: nn.Module) -> bool:
    """True when ``net`` holds something the deploy form folds (re-parameterizable blocks, weight norm)."""
    return bool(reparameterizable_blocks(net) or weight_normed_convs(net))


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
    holds what folds; else :func:`training_form_from_config` of the model config that `load_model` attaches
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
