"""Loading and saving network weights, whatever file they come in.

`load_weights` accepts
- a Lightning checkpoint of `SRModule` (`state_dict` with `net.`-prefixed keys),
- a weights file written by `save_weights` (`{"format": "sr_lightning", "state_dict": ...}`),
- an official checkpoint: a plain state dict, possibly wrapped (`params`, `params_ema`, `state_dict`, `model`) and/or
  `module.`-prefixed; when its keys are not the network's own, the network's `convert_official(state_dict)` turns
  them into its naming.
Everything is read with `torch.load(..., map_location="cpu", weights_only=True)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "sr_lightning"
_WRAPPERS = ("params_ema", "params", "state_dict", "model", "net")


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read a weights file and return (plain state dict, kind) with kind in {lightning, sr_lightning, official}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict or checkpoint, got {type(obj).__name__}")
    if obj.get("format") == FORMAT:
        return dict(obj["state_dict"]), FORMAT
    if "pytorch-lightning_version" in obj:
        sd = obj["state_dict"]
        return {k[len("net.") :]: v for k, v in sd.items() if k.startswith("net.")}, "lightning"
    for key in _WRAPPERS:  # BasicSR (`params`, `params_ema`) and other common wrappers
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    sd = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ValueError(f"{path}: no tensors found (keys: {list(obj)[:8]})")
    return sd, "official"


def load_weights(net: nn.Module, path: str | Path) -> str:
    """Load `path` into `net` strictly (converting official key layouts); returns the detected kind."""
    sd, kind = read_state_dict(path)
    own = set(net.state_dict())
    if set(sd) != own and hasattr(net, "convert_official"):
        sd = net.convert_official(sd)
    missing = sorted(own - set(sd))
    unexpected = sorted(set(sd) - own)
    if missing or unexpected:
        raise RuntimeError(
            f"{path} ({kind}) does not fit {type(net).__name__}: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}. "
            "Check model=..., scale=... and the model options."
        )
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as err:  # shape mismatches: usually the wrong scale or width
        raise RuntimeError(f"{path} ({kind}) does not fit {type(net).__name__}: {err}") from err
    return kind


def save_weights(net: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Save `net`'s weights (CPU tensors) with optional metadata (e.g. the model config) for `load_weights`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, "state_dict": sd, "meta": meta or {}}, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a truncated file behind
    return path


def count_parameters(net: nn.Module) -> int:
    """Number of parameters of `net` (all, trainable or not)."""
    return sum(p.numel() for p in net.parameters())
