"""Format versions of the files sr_lightning writes, and the upgrades that keep older files loading.

Weights files (`sr_lightning.weights.save_weights`) carry ``format_version`` and our Lightning checkpoints
(`SRModule.on_save_checkpoint`) ``sr_format_version``; files without one are version 0 (written before the key was
introduced). A rename of state-dict keys bumps `FORMAT_VERSION` and appends one function to `UPGRADES`, which maps
a version-n network state dict to version n + 1; loading applies them in order, from the file's version to the
current one, so a file written before any number of renames still loads. Official checkpoints are not ours and have
no version: their converters (`archs/<net>/convert.py`) map them straight to the current names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import torch

StateDict = dict[str, torch.Tensor]
#: the key holding the version in a weights file and in a Lightning checkpoint
WEIGHTS_KEY = "format_version"
CHECKPOINT_KEY = "sr_format_version"
#: the checkpoint entries holding `SRModule` state dicts (`net.`-prefixed): the weights, and the raw weights that
#: the EMA callback keeps beside the average
CHECKPOINT_STATE_DICTS = ("state_dict", "current_model_state")

# Version 0 -> 1 (issue 8: "scale" names the SR factor only): the per-channel multiplier of EDBB's edge branches
# (``<block>.sobel_x.scale``) and FDIWN's learnt scalars (official ``Scale`` modules, ``<unit>.scale_x.scale``)
# became ``.gain`` (``<block>.sobel_x.gain``, ``<unit>.gain_x.gain``).
_V0_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(^|\.)(sobel_x|sobel_y|laplacian)\.scale$"), r"\1\2.gain"),
    (re.compile(r"(^|\.)scale_(x|res|q|p)\.scale$"), r"\1gain_\2.gain"),
)


def _v0_to_v1(state_dict: StateDict) -> StateDict:
    """`.scale` -> `.gain` for EDBB edge branches and FDIWN gains."""
    out: StateDict = {}
    for key, value in state_dict.items():
        for pattern, template in _V0_RENAMES:
            key = pattern.sub(template, key)
        out[key] = value
    return out


#: UPGRADES[n] maps a version-n state dict to version n + 1
UPGRADES: tuple[Callable[[StateDict], StateDict], ...] = (_v0_to_v1,)
FORMAT_VERSION: int = len(UPGRADES)


def check_version(version: Any, where: str = "this file") -> int:
    """`version` as an int in 0..FORMAT_VERSION; ValueError for anything else (a newer or a damaged file)."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"{where}: format version {version!r} is not a non-negative integer")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{where} was written in format version {version} by a newer sr_lightning; this one reads versions "
            f"0..{FORMAT_VERSION}: upgrade sr_lightning to load it"
        )
    return version


def upgrade_state_dict(state_dict: Mapping[str, torch.Tensor], version: int, where: str = "this file") -> StateDict:
    """A network state dict of format `version` brought to `FORMAT_VERSION`, one upgrade after the other."""
    sd = dict(state_dict)
    for upgrade in UPGRADES[check_version(version, where) :]:
        sd = upgrade(sd)
    return sd


def _upgrade_prefixed(state_dict: Mapping[str, Any], version: int, prefix: str, where: str) -> dict[str, Any]:
    """Upgrade the entries under `prefix` (the network's) and keep the others (loss buffers, ...) as they are."""
    net = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    rest = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
    return rest | {prefix + k: v for k, v in upgrade_state_dict(net, version, where).items()}


def upgrade_checkpoint(checkpoint: MutableMapping[str, Any], prefix: str = "net.") -> None:
    """Bring a Lightning checkpoint of `SRModule` to `FORMAT_VERSION` in place (its network entries under
    `prefix` in every `CHECKPOINT_STATE_DICTS` entry); idempotent."""
    version = check_version(checkpoint.get(CHECKPOINT_KEY, 0), "this checkpoint")
    if version < FORMAT_VERSION:
        for key in CHECKPOINT_STATE_DICTS:
            if isinstance(checkpoint.get(key), Mapping):
                checkpoint[key] = _upgrade_prefixed(checkpoint[key], version, prefix, "this checkpoint")
    checkpoint[CHECKPOINT_KEY] = FORMAT_VERSION
