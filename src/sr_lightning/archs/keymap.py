"""Renaming an official checkpoint's modules to ours by a list of (official module, our module) pairs: the converters
of IMDN, RFDN and PAN build such a list per block count, and apply it in either direction (inverse by construction)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch

StateDict = dict[str, torch.Tensor]


def rename_modules(
    state_dict: StateDict, pairs: Iterable[tuple[str, str]], leaves: tuple[str, ...] = ("weight", "bias")
) -> tuple[StateDict, list[str]]:
    """``state_dict`` with each key ``<from>.<leaf>`` renamed ``<to>.<leaf>`` for the (from, to) module ``pairs``, in
    the order of ``pairs`` (the official module order, so an export lists its keys as the official file does); and
    the keys no pair names (the caller reports them)."""
    table = {f"{a}.{leaf}": f"{b}.{leaf}" for a, b in pairs for leaf in leaves}
    renamed = {new: state_dict[old] for old, new in table.items() if old in state_dict}
    return renamed, [k for k in state_dict if k not in table]


def block_count(state_dict: StateDict, pattern: str) -> int:
    """How many distinct block numbers ``pattern`` (a regex with one group, matched at a key's start) captures. A gap
    in the numbering leaves a block's keys unnamed by the pairs built for that count, so they are reported."""
    return len({m.group(1) for k in state_dict if (m := re.match(pattern, k))})
