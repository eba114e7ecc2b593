"""Official FDIWN state dict (IVIPLab/FDIWN ``MODEL``, 1591 keys) -> :class:`~sr_lightning.archs.fdiwn.FDIWN` keys.

The official names are walked level by level (network -> FSWG ``Li`` -> WDIB ``MY`` -> units); every key must be
recognised at every level, otherwise ``ValueError``. Weight-normalised convs may come with the legacy names
``weight_g`` / ``weight_v`` (the released checkpoints), the parametrization names ``parametrizations.weight.
original0/1``, or folded into ``weight``; they keep that form (load into a folded network with the latter).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from sr_lightning.archs.weight_norm import LEGACY_NAMES

Mapper = Callable[[str], "str | None"]
# (regex for the leading part of the key, replacement template, mapper of the rest or None for a leaf)
Rule = tuple[str, str, "Mapper | None"]


def _walk(rules: list[Rule], key: str) -> str | None:
    """Map ``key`` by the first rule whose leading part matches and whose rest its child maps (None: no rule)."""
    for pattern, template, child in rules:
        m = re.fullmatch(pattern, key) if child is None else re.match(pattern + r"\.(?P<rest>.+)$", key)
        if not m:
            continue
        # official 1-based module numbers (``Li2``, ``MY3``, ``conv1``) -> our 0-based list indices
        head = template.format(n=int(m.group("n")) - 1) if "n" in m.groupdict() else template
        if child is None:
            return head
        rest = child(m.group("rest"))
        if rest is not None:
            return f"{head}.{rest}"
    return None


def _plain(key: str) -> str | None:
    """Leaves of a plain conv / norm: weight, bias."""
    return key if key in ("weight", "bias") else None


def _normed(key: str) -> str | None:
    """Leaves of a weight-normalised conv, in any of its three forms."""
    if key in LEGACY_NAMES:
        return LEGACY_NAMES[key]
    if key in LEGACY_NAMES.values() or key in ("weight", "bias"):
        return key
    return None


def _gain(key: str) -> str | None:
    """The official ``Scale`` module's parameter ``scale`` is our ``Gain.gain``."""
    return "gain" if key == "scale" else None


_SA: list[Rule] = [
    (r"cweight", "channel_weight", None),
    (r"cbias", "channel_bias", None),
    (r"sweight", "spatial_weight", None),
    (r"sbias", "spatial_bias", None),
    (r"gn", "norm", _plain),
]

# official SRBW / SRBW1 / SRBW2 (``conv`` exists only in the convolutional-shortcut units)
_UNIT: list[Rule] = [
    (r"body\.0", "expand", _normed),
    (r"body\.2", "reduce", _normed),
    (r"body\.3", "conv", _normed),
    (r"SAlayer", "attn", lambda k: _walk(_SA, k)),
    (r"conv", "shortcut", _plain),
    (r"res_scale", "gain_res", _gain),
    (r"x_scale", "gain_x", _gain),
]
_unit: Mapper = lambda k: _walk(_UNIT, k)  # noqa: E731

# official CoffConv: Sequential indices of the two 1x1 convs in each branch
_COEF: list[Rule] = [
    (r"upper_branch\.1", "mean_mlp.0", _plain),
    (r"upper_branch\.3", "mean_mlp.2", _plain),
    (r"lower_branch\.0", "std_mlp.0", _plain),
    (r"lower_branch\.2", "std_mlp.2", _plain),
]

_WDIB: list[Rule] = [
    (r"srb1", "distil1.wirw", _unit),
    (r"rb1", "distil1.wcrw", _unit),
    (r"srb2", "distil2.wirw", _unit),
    (r"rb2", "distil2.wcrw", _unit),
    (r"A1_coffconv", "cc1_f", lambda k: _walk(_COEF, k)),
    (r"B1_coffconv", "cc1_x", lambda k: _walk(_COEF, k)),
    (r"A2_coffconv", "cc2_q", lambda k: _walk(_COEF, k)),
    (r"B2_coffconv", "cc2_f", lambda k: _walk(_COEF, k)),
    (r"conv_distilled1", "gate_p", _plain),
    (r"conv_distilled2", "gate_q", _plain),
    (r"srb3", "refine_q", _unit),
    (r"srb4", "refine_p", _unit),
    (r"scale_x1", "scf.gain_q", _gain),
    (r"scale_x2", "scf.gain_p", _gain),
    (r"fuse1", "scf.fuse", _unit),
    (r"fuse2", "scf.gate", _plain),
    (r"SAlayer", "attn", lambda k: _walk(_SA, k)),
]


_FSWG: list[Rule] = [
    (r"MY(?P<n>[1-9]\d*)", "wdib.{n}", lambda k: _walk(_WDIB, k)),
    (r"conv", "skip.0", _plain),
    (r"conv(?P<n>[12])", "fuse.{n}", _plain),
    (r"rb1", "residual", _unit),
    (r"scale_x", "gain_x", _gain),
    (r"scale_res", "gain_res", _gain),
]

_TOP: list[Rule] = [
    (r"Sub_mean", "sub_mean", _plain),
    (r"Add_mean", "add_mean", _plain),
    (r"head", "head", _plain),
    (r"Li(?P<n>[1-9]\d*)", "fswg.{n}", lambda k: _walk(_FSWG, k)),
    (r"conv1", "up1.0", _plain),
    (r"UP1\.0", "up1.1", _plain),
    (r"conv2", "up2.0", _plain),
    (r"UP2\.0", "up2.1", _plain),
]


def convert_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official FDIWN state dict (``Sub_mean``, ``head``, ``Li{g}.MY{k}...``, ``UP1``...) to ours."""
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        new = _walk(_TOP, key)
        if new is None:
            unknown.append(key)
        else:
            converted[new] = value
    if unknown or not converted:
        raise ValueError(
            f"not an official FDIWN state dict: {len(unknown)} unexpected key(s), e.g. {unknown[:5]}; expected keys "
            "like 'Sub_mean.weight', 'head.weight', 'Li1.MY1.srb1.body.0.weight_g', 'Li1.conv1.weight', 'UP1.0.bias'"
        )
    return converted
