"""Official FDIWN state dict (IVIPLab/FDIWN ``MODEL``, 1591 keys) <-> :class:`~sr_lightning.archs.fdiwn.FDIWN` keys.

The official names are walked level by level (network -> FSWG ``Li`` -> WDIB ``MY`` -> units); every key must be
recognised at every level, otherwise ``ValueError``. Weight-normalised convs may come with the legacy names
``weight_g`` / ``weight_v`` (the released checkpoints), the parametrization names ``parametrizations.weight.
original0/1``, or folded into ``weight``; they keep that form (load into a folded network with the latter).
:func:`to_official` walks the same rule tables backwards (each rule's template as the pattern and its pattern as
the template) and writes the legacy names, as the released checkpoints do.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import torch

from sr_lightning.archs.weight_norm import LEGACY_NAMES

Mapper = Callable[[str], "str | None"]
# (regex for the leading part of the key, replacement template, child: a rule table for the rest of the key, a
# leaf mapper of the rest (inverse in _LEAF_BACK), or None when the rule maps the whole key)
Rule = tuple[str, str, "list[Rule] | Mapper | None"]


class _FoldedWeightNorm(Exception):
    """Raised by the backward walk on a weight-normalised conv's folded ``weight``."""


@functools.cache
def _backward(pattern: str, template: str) -> tuple[str, str]:
    """A rule turned around: its template as a regex (``{n}`` a number), its pattern as a template (``(?P<n>..)``
    becomes ``{n}``, escapes dropped)."""
    back_pattern = r"(?P<n>\d+)".join(re.escape(part) for part in template.split("{n}"))
    back_template = re.sub(r"\\(.)", r"\1", re.sub(r"\(\?P<n>[^()]*\)", "{n}", pattern))
    return back_pattern, back_template


def _walk(rules: list[Rule], key: str, back: bool = False) -> str | None:
    """Map ``key`` by the first rule whose leading part matches and whose child maps the rest (None: no rule).

    ``back``: the inverse mapping (our key -> official key), every rule used through :func:`_backward`."""
    for pattern, template, child in rules:
        if back:
            pattern, template = _backward(pattern, template)
        m = re.fullmatch(pattern, key) if child is None else re.match(pattern + r"\.(?P<rest>.+)$", key)
        if not m:
            continue
        # official 1-based module numbers (``Li2``, ``MY3``, ``conv1``) <-> our 0-based list indices
        shift = 1 if back else -1
        head = template.format(n=int(m.group("n")) + shift) if "n" in m.groupdict() else template
        if child is None:
            return head
        if isinstance(child, list):
            rest = _walk(child, m.group("rest"), back)
        else:
            rest = (_LEAF_BACK[child] if back else child)(m.group("rest"))
        if rest is not None:
            return f"{head}.{rest}"
    return None


def _plain(key: str) -> str | None:
    """Leaves of a plain conv / norm: weight, bias (its own inverse)."""
    return key if key in ("weight", "bias") else None


def _normed(key: str) -> str | None:
    """Leaves of a weight-normalised conv, in any of its three forms."""
    if key in LEGACY_NAMES:
        return LEGACY_NAMES[key]
    if key in LEGACY_NAMES.values() or key in ("weight", "bias"):
        return key
    return None


_TO_LEGACY = {ours: legacy for legacy, ours in LEGACY_NAMES.items()}


def _normed_back(key: str) -> str | None:
    """Inverse of :func:`_normed`: the legacy names; a folded ``weight`` cannot be split into g and v."""
    if key == "weight":
        raise _FoldedWeightNorm
    return _TO_LEGACY.get(key, key if key == "bias" else None)


# The official ``Scale`` module's parameter ``scale`` is our ``Gain.gain``.
_GAIN: list[Rule] = [(r"scale", "gain", None)]

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
    (r"SAlayer", "attn", _SA),
    (r"conv", "shortcut", _plain),
    (r"res_scale", "gain_res", _GAIN),
    (r"x_scale", "gain_x", _GAIN),
]

# official CoffConv: Sequential indices of the two 1x1 convs in each branch
_COEF: list[Rule] = [
    (r"upper_branch\.1", "mean_mlp.0", _plain),
    (r"upper_branch\.3", "mean_mlp.2", _plain),
    (r"lower_branch\.0", "std_mlp.0", _plain),
    (r"lower_branch\.2", "std_mlp.2", _plain),
]

_WDIB: list[Rule] = [
    (r"srb1", "distil1.wirw", _UNIT),
    (r"rb1", "distil1.wcrw", _UNIT),
    (r"srb2", "distil2.wirw", _UNIT),
    (r"rb2", "distil2.wcrw", _UNIT),
    (r"A1_coffconv", "cc1_f", _COEF),
    (r"B1_coffconv", "cc1_x", _COEF),
    (r"A2_coffconv", "cc2_q", _COEF),
    (r"B2_coffconv", "cc2_f", _COEF),
    (r"conv_distilled1", "gate_p", _plain),
    (r"conv_distilled2", "gate_q", _plain),
    (r"srb3", "refine_q", _UNIT),
    (r"srb4", "refine_p", _UNIT),
    (r"scale_x1", "scf.gain_q", _GAIN),
    (r"scale_x2", "scf.gain_p", _GAIN),
    (r"fuse1", "scf.fuse", _UNIT),
    (r"fuse2", "scf.gate", _plain),
    (r"SAlayer", "attn", _SA),
]


_FSWG: list[Rule] = [
    (r"MY(?P<n>[1-9]\d*)", "wdib.{n}", _WDIB),
    (r"conv", "skip.0", _plain),
    (r"conv(?P<n>[12])", "fuse.{n}", _plain),
    (r"rb1", "residual", _UNIT),
    (r"scale_x", "gain_x", _GAIN),
    (r"scale_res", "gain_res", _GAIN),
]

_TOP: list[Rule] = [
    (r"Sub_mean", "sub_mean", _plain),
    (r"Add_mean", "add_mean", _plain),
    (r"head", "head", _plain),
    (r"Li(?P<n>[1-9]\d*)", "fswg.{n}", _FSWG),
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


_LEAF_BACK: dict[Mapper, Mapper] = {_plain: _plain, _normed: _normed_back}


def to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename our FDIWN state dict to the official keys (inverse of :func:`convert_official`).

    Weight-normalised convs are written as ``weight_g`` / ``weight_v``, so the state dict must be the training form
    (the network as loaded from an official file): a folded ``weight`` cannot be split back, ``ValueError``.
    """
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    folded: list[str] = []
    for key, value in state_dict.items():
        try:
            new = _walk(_TOP, key, back=True)
        except _FoldedWeightNorm:
            folded.append(key)
            continue
        # the forward walk must give the key back (e.g. ``fswg.0`` -> ``Li1``, but no ``fuse.2`` -> ``conv3``)
        if new is None or _walk(_TOP, new) != key:
            unknown.append(key)
        else:
            converted[new] = value
    if folded:
        raise ValueError(
            f"cannot export to the official FDIWN layout: {len(folded)} weight-normalised conv(s) are folded into a "
            f"plain weight, e.g. {folded[:3]}, which cannot be split into weight_g / weight_v; export from the "
            "training form (the network as loaded from the official file, not folded by to_deploy_form)"
        )
    if unknown or not converted:
        raise ValueError(
            f"not an FDIWN state dict: {len(unknown)} key(s) without an official counterpart, e.g. {unknown[:5]}; "
            "expected keys like 'sub_mean.weight', 'fswg.0.wdib.0.distil1.wirw.expand.parametrizations.weight."
            "original0', 'up1.1.bias'"
        )
    return converted
