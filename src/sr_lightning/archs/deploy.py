"""The deploy (inference / export) form of any network: re-parameterizable blocks folded, weight norm baked in."""

from __future__ import annotations

from torch import nn

from sr_lightning.archs.reparam import reparameterize_model
from sr_lightning.archs.weight_norm import fold_weight_norm


def to_deploy_form(net: nn.Module) -> dict[str, int]:
    """Fold `net` in place for inference: every EDBB-like block into one conv, every weight-normalised conv into a
    plain one. Outputs are unchanged (up to float rounding). Returns how many of each were folded."""
    return {"reparameterized": reparameterize_model(net), "weight_norm": fold_weight_norm(net)}
