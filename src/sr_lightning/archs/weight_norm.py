"""Weight normalisation helpers (Salimans & Kingma 2016: w = g * v / ||v||), for any network.

Networks here use the parametrization API, ``torch.nn.utils.parametrizations.weight_norm``: a normalised conv
keeps ``g`` and ``v`` as ``parametrizations.weight.original0`` / ``original1`` and recomputes ``weight`` on every
access. Older checkpoints (the deprecated ``torch.nn.utils.weight_norm``) name them ``weight_g`` / ``weight_v``;
``LEGACY_NAMES`` maps those names. ``archs.forms.fold_weight_norm`` bakes the current weights in and
removes the parametrizations (faster inference, plain export; the state dict then holds ``weight``).
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import weight_norm

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
