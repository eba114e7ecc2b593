"""FDIWN's hyper-parameters read back from a state dict in our key naming (official files: convert them first).

Counted from the keys: FSWGs (``num_groups``: 3 FDIWN, 2 FDIWN-M), WDIBs per FSWG, the width (head). The scale is
the second upsampling path's output, ``3 * scale**2`` maps before the pixel shuffle. The official x4 model differs
from x2/x3 in known shapes (expansion widths, upsampler widths), so the preset is the one whose network has exactly
these shapes; ``up2_input`` (not visible in shapes) follows the preset. The FSWG call schedule has no weights of its
own: the official one for ``num_groups`` is assumed (our files carry their config, which decides instead).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from sr_lightning.archs.fdiwn.network import FDIWN, PRESETS

TARGET = "sr_lightning.archs.fdiwn.FDIWN"


def _weight_shapes(sd: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Shapes by key, a weight-normalised conv's direction (``original1``) and a folded ``weight`` alike."""
    shapes = {}
    for key, value in sd.items():
        if key.endswith(".parametrizations.weight.original0"):
            continue
        shapes[key.replace(".parametrizations.weight.original1", ".weight")] = tuple(value.shape)
    return shapes


def config_from_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """The FDIWN model config (Hydra ``_target_`` form) whose network has exactly these shapes, or None."""
    if not {"sub_mean.weight", "head.weight", "up2.1.weight"} <= set(sd):
        return None
    groups = {int(m.group(1)) for k in sd if (m := re.match(r"fswg\.(\d+)\.", k))}
    wdibs = {int(m.group(1)) for k in sd if (m := re.match(r"fswg\.0\.wdib\.(\d+)\.", k))}
    scale = math.isqrt(sd["up2.1.weight"].shape[0] // 3)
    if not groups or not wdibs or 3 * scale**2 != sd["up2.1.weight"].shape[0]:
        return None
    base = {"scale": scale, "n_feats": int(sd["head.weight"].shape[0]), "num_groups": len(groups)}
    base["num_wdib"] = len(wdibs)
    want = _weight_shapes(sd)
    for name in sorted(PRESETS, key=lambda n: n != f"x{scale}"):  # the scale's own preset first
        try:
            candidate = FDIWN(preset=name, **base)
        except ValueError:  # e.g. n_feats not divisible by the attention groups
            return None
        if _weight_shapes(candidate.state_dict()) == want:
            return {"_target_": TARGET, **base, "preset": "auto" if name == f"x{scale}" else name}
    return None
