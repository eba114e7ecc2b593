"""Loading and saving network weights, whatever file they come in.

`load_weights` accepts
- a Lightning checkpoint of `SRModule` (`state_dict` with `net.`-prefixed keys),
- a weights file written by `save_weights` (`{"format": "sr_lightning", "format_version": n, "state_dict": ...}`),
- an official checkpoint: a plain state dict, possibly wrapped (`params`, `params_ema`, `state_dict`, `model`) and/or
  `module.`-prefixed; when its keys are not the network's own, the network's `convert_official(state_dict)` turns
  them into its naming;
- a safetensors file (`sr_lightning.exporters.safetensors` writes our metadata into its header).
Everything is read with `torch.load(..., map_location="cpu", weights_only=True)`. Our own files (weights files,
checkpoints) written in an older format version get their keys renamed to today's (`sr_lightning.formats`).
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sr_lightning.archs.deploy import to_deploy_form
from sr_lightning.archs.reparam import fold_state_dict
from sr_lightning.formats import CHECKPOINT_KEY, FORMAT_VERSION, WEIGHTS_KEY, upgrade_state_dict
from sr_lightning.utils.atomic import atomic_path

FORMAT = "sr_lightning"
_WRAPPERS = ("params_ema", "params", "state_dict", "model", "net")


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read a weights file and return (plain state dict, kind) with kind in {lightning, sr_lightning, official}.

    Our files (weights files, Lightning checkpoints of `SRModule`) come back in today's key names, whatever format
    version wrote them; ValueError for a version newer than this code reads."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    obj = _load(path)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict or checkpoint, got {type(obj).__name__}")
    if obj.get("format") == FORMAT:
        return upgrade_state_dict(obj["state_dict"], obj.get(WEIGHTS_KEY, 0), str(path)), FORMAT
    if "pytorch-lightning_version" in obj:
        sd = obj.get("state_dict") or {}
        net_sd = {k[len("net.") :]: v for k, v in sd.items() if k.startswith("net.")}
        if not net_sd:  # SRModule keeps its network under `net.`: this is some other LightningModule's checkpoint
            raise ValueError(
                f"{path}: a Lightning checkpoint of another LightningModule: its state_dict has no 'net.' keys "
                f"(first keys: {list(sd)[:5]}); sr_lightning loads checkpoints of its SRModule, weights files and "
                "official checkpoints"
            )
        return upgrade_state_dict(net_sd, obj.get(CHECKPOINT_KEY, 0), str(path)), "lightning"
    for key in _WRAPPERS:  # BasicSR (`params`, `params_ema`) and other common wrappers
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    sd = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ValueError(f"{path}: no tensors found (keys: {list(obj)[:8]})")
    return sd, "official"


def _load(path: Path) -> Any:
    """``torch.load`` on CPU with ``weights_only=True`` (a safetensors file: `_load_safetensors`); any failure
    becomes a ValueError naming the file."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[8:9] == b"{":  # safetensors: an 8-byte little-endian header length, then the JSON header
        return _load_safetensors(path)
    # torch.save writes a zip archive (PK..); the legacy format is a pickle (protocol byte 0x80).
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise ValueError(f"{path}: not a PyTorch weights file (it starts with {head!r}, not a zip archive or a pickle)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # a pickle of Python objects besides tensors: weights_only refuses it
        why = [line.strip() for line in str(err).splitlines() if "WeightsUnpickler error" in line]
        raise ValueError(
            f"{path}: holds Python objects besides tensors, which torch.load(weights_only=True) refuses"
            f"{' (' + why[0] + ')' if why else ''}; save a state dict or use sr_lightning.weights.save_weights"
        ) from err
    except Exception as err:  # truncated zip, damaged pickle: torch raises RuntimeError, EOFError, KeyError, ...
        raise ValueError(
            f"{path}: not a PyTorch weights file, or a damaged one ({type(err).__name__}: {str(err)[:200]})"
        ) from err


def _load_safetensors(path: Path) -> Any:
    """A safetensors file as the dict `save_weights` writes when it carries our metadata (`exporters.safetensors`),
    else its plain state dict."""
    try:
        from safetensors import safe_open
    except ImportError as err:
        raise ImportError(f"{path} is a safetensors file: pip install 'sr-lightning[export]' to read it") from err
    try:
        with safe_open(str(path), framework="pt") as f:
            sd = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a Mapping)
            header = f.metadata() or {}
    except Exception as err:  # damaged header or data
        raise ValueError(f"{path}: a damaged safetensors file ({type(err).__name__}: {str(err)[:200]})") from err
    if FORMAT not in header:
        return sd
    saved = json.loads(header[FORMAT])
    return {"format": FORMAT, WEIGHTS_KEY: saved.get(WEIGHTS_KEY, 0), "state_dict": sd, "meta": saved.get("meta", {})}


def _saved_from(path: Path | str) -> str:
    """``"; the file holds <Net> x<scale> weights"`` from the metadata sr_lightning writes, else ``""`` (error path)."""
    try:
        obj = _load(Path(path))
        meta = obj.get("meta") or obj.get("sr_meta") or {}
        target = str(meta["model"]["_target_"]).rsplit(".", 1)[-1]
        return f"; the file holds {target} x{meta.get('scale', '?')} weights"
    except Exception:  # no metadata (official files): nothing to add
        return ""


def _fit_keys(net: nn.Module, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """`sd` in `net`'s key naming (converted from the official one if need be), or None if it can't fit."""
    own = set(net.state_dict())
    if set(sd) == own:
        return sd
    if hasattr(net, "convert_official"):
        try:
            converted = net.convert_official(sd)
        except ValueError:
            return None
        if set(converted) == own:
            return converted
    return None


def match_state_dict(net: nn.Module, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """Bring `sd` into `net`'s naming. A deploy-form checkpoint given to a training-form network (re-parameterizable
    blocks, weight-normalised convs) folds the network first, in place. None when nothing fits."""
    fitted = _fit_keys(net, sd)
    if fitted is None:
        folded = copy.deepcopy(net)
        if any(to_deploy_form(folded).values()) and _fit_keys(folded, sd) is not None:
            to_deploy_form(net)
            fitted = _fit_keys(net, sd)
    return fitted


def _mismatch_error(
    net: nn.Module, sd: dict[str, torch.Tensor], path: Path | str, kind: str, detail: str
) -> RuntimeError:
    own = set(net.state_dict())
    missing, unexpected = sorted(own - set(sd)), sorted(set(sd) - own)
    return RuntimeError(
        f"{path} ({kind}) does not fit {type(net).__name__}{_saved_from(path)}: {len(missing)} missing keys "
        f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}{detail}. Check model=..., scale=... "
        "and the model options."
    )


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata sr_lightning stores with its files (`meta` of weights files, `sr_meta` of checkpoints), or {}."""
    obj = _load(Path(path))
    meta = (obj.get("meta") or obj.get("sr_meta") or {}) if isinstance(obj, Mapping) else {}
    return dict(meta) if isinstance(meta, Mapping) else {}


def config_targets(node: Any) -> list[str]:
    """Every `_target_` in a (nested) config."""
    if isinstance(node, Mapping):
        own = [str(v) for k, v in node.items() if k == "_target_"]
        return own + [t for v in node.values() for t in config_targets(v)]
    if isinstance(node, (list, tuple)):
        return [t for v in node for t in config_targets(v)]
    return []


def fold_with_saved_model(path: str | Path, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """`sd` folded to the deploy form through the network its file's metadata describes (the model config that
    sr_lightning saves with `model.pth` and checkpoints), for a folded network given training-form weights.

    Only configs whose every `_target_` is in sr_lightning are built (a weights file must not run foreign code).
    None when the file has no such config or its network does not take `sd`."""
    model_cfg = read_meta(path).get("model")
    targets = config_targets(model_cfg)
    if not targets or not all(t.startswith("sr_lightning.") for t in targets):
        return None
    from hydra.utils import instantiate  # only needed on this path

    template = instantiate(model_cfg)
    fitted = _fit_keys(template, sd)
    return fold_state_dict(template, fitted, fold=to_deploy_form) if fitted is not None else None


def load_weights(net: nn.Module, path: str | Path) -> str:
    """Load `path` into `net` strictly (converting official key layouts, folding a training-form network for a
    deploy-form checkpoint, or folding training-form weights for a deploy-form network through the model config saved
    with them); returns the detected kind."""
    sd, kind = read_state_dict(path)
    fitted = match_state_dict(net, sd)
    if fitted is None and kind != "official":
        folded = fold_with_saved_model(path, sd)
        fitted = match_state_dict(net, folded) if folded is not None else None
    if fitted is None:
        raise _mismatch_error(net, sd, path, kind, "")
    try:
        net.load_state_dict(fitted, strict=True)
    except RuntimeError as err:  # shape mismatches: usually the wrong scale or width
        raise RuntimeError(f"{path} ({kind}) does not fit {type(net).__name__}{_saved_from(path)}: {err}") from err
    return kind


def init_weights_from(net: nn.Module, path: str | Path) -> list[str]:
    """Weights-only initialisation from an earlier run's checkpoint (`init_from=`, e.g. the previous EFDN stage).

    Like `load_weights`, except that tensors under the network's upsampler (`net.upsampler_prefixes`) whose shape
    differs, as after a scale change (x2 pre-training -> x4), keep their fresh initialisation. Returns those keys.
    """
    sd, kind = read_state_dict(path)
    fitted = match_state_dict(net, sd)
    if fitted is None:
        raise _mismatch_error(net, sd, path, kind, "")
    own = net.state_dict()
    prefixes = tuple(getattr(net, "upsampler_prefixes", ()))
    reinit = [k for k, v in fitted.items() if v.shape != own[k].shape]
    bad = [k for k in reinit if not k.startswith(prefixes)]
    if bad:
        shapes = [f"{k}: {tuple(fitted[k].shape)} vs {tuple(own[k].shape)}" for k in bad[:5]]
        raise RuntimeError(f"{path} ({kind}): shapes differ outside the upsampler {prefixes}: {shapes}")
    net.load_state_dict({k: v for k, v in fitted.items() if k not in reinit}, strict=False)
    return reinit


def save_weights(net: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Save `net`'s weights (CPU tensors) with optional metadata (e.g. the model config) for `load_weights`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:  # an interrupted save never leaves a truncated file behind
        torch.save({"format": FORMAT, WEIGHTS_KEY: FORMAT_VERSION, "state_dict": sd, "meta": meta or {}}, tmp)
    return path


def count_parameters(net: nn.Module) -> int:
    """Number of parameters of `net` (all, trainable or not)."""
    return sum(p.numel() for p in net.parameters())
