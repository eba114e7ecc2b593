"""Loading and saving network weights, whatever file they come in.

A file is read once into a `sr_lightning.weights_file.WeightsFile` (its kinds and the safety rules are described
there); the functions here fit its state dict into a network through `sr_lightning.archs.forms.fit_state_dict`
(official key layouts converted, a deploy-form file folds a training-form network, training-form weights folded
through the network their own checked metadata describes). Every function that takes a
weights file also takes the `WeightsFile` already read, so that callers read a file once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sr_lightning.archs.forms import fit_state_dict
from sr_lightning.archs.optimize import refuse_optimized
from sr_lightning.formats import FORMAT_VERSION, WEIGHTS_KEY
from sr_lightning.utils.atomic import atomic_open
from sr_lightning.weights_file import FORMAT, WeightsFile, read_weights

__all__ = ["FORMAT", "WeightsFile", "load_weights", "read_meta", "read_state_dict", "read_weights", "save_weights"]

WeightsSource = str | Path | WeightsFile


def _read(source: WeightsSource) -> WeightsFile:
    return source if isinstance(source, WeightsFile) else read_weights(source)


def read_state_dict(source: WeightsSource) -> tuple[dict[str, torch.Tensor], str]:
    """(plain network state dict, kind) of a weights file, kind in {lightning, sr_lightning, official}. Our files
    come back in today's key names, whatever format version wrote them."""
    wf = _read(source)
    return wf.state_dict, wf.kind


def read_meta(source: WeightsSource) -> dict[str, Any]:
    """The metadata sr_lightning stores with its files (`meta` of weights files, `sr_meta` of checkpoints), or {}."""
    return dict(_read(source).meta)


def _mismatch_error(net: nn.Module, wf: WeightsFile, detail: str = "") -> RuntimeError:
    own, sd = set(net.state_dict()), wf.state_dict
    missing, unexpected = sorted(own - set(sd)), sorted(set(sd) - own)
    return RuntimeError(
        f"{wf.path} ({wf.kind}) does not fit {type(net).__name__}{wf.saved_network()}: {len(missing)} missing keys "
        f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}{detail}. Check model=..., scale=... "
        "and the model options."
    )


def fit_weights(net: nn.Module, wf: WeightsFile) -> dict[str, torch.Tensor]:
    """`wf`'s state dict in `net`'s naming and form (`net` folded in place for a deploy-form file); RuntimeError
    naming the file when nothing fits."""
    fitted = fit_state_dict(net, wf.state_dict, wf.model if wf.kind != "official" else None)
    if fitted is None:
        raise _mismatch_error(net, wf)
    return fitted


def load_weights(net: nn.Module, source: WeightsSource) -> str:
    """Load a weights file (or a `WeightsFile` already read) into `net` strictly (converting official key layouts,
    folding a training-form network for a deploy-form file, or folding training-form weights for a deploy-form
    network through the model config saved with them); returns the file's kind."""
    wf = _read(source)
    fitted = fit_weights(net, wf)
    try:
        net.load_state_dict(fitted, strict=True)
    except RuntimeError as err:  # shape mismatches: usually the wrong scale or width
        raise RuntimeError(
            f"{wf.path} ({wf.kind}) does not fit {type(net).__name__}{wf.saved_network()}: {err}"
        ) from err
    return wf.kind


def init_weights_from(net: nn.Module, source: WeightsSource) -> list[str]:
    """Weights-only initialisation from an earlier run's checkpoint (`init_from=`, e.g. the previous EFDN stage).

    Like `load_weights`, except that tensors under the network's upsampler (`net.upsampler_prefixes`) whose shape
    differs, as after a scale change (x2 pre-training -> x4), keep their fresh initialisation. Returns those keys.
    """
    wf = _read(source)
    fitted = fit_state_dict(net, wf.state_dict)
    if fitted is None:
        raise _mismatch_error(net, wf)
    own = net.state_dict()
    prefixes = tuple(getattr(net, "upsampler_prefixes", ()))
    reinit = [k for k, v in fitted.items() if v.shape != own[k].shape]
    bad = [k for k in reinit if not k.startswith(prefixes)]
    if bad:
        shapes = [f"{k}: {tuple(fitted[k].shape)} vs {tuple(own[k].shape)}" for k in bad[:5]]
        raise RuntimeError(f"{wf.path} ({wf.kind}): shapes differ outside the upsampler {prefixes}: {shapes}")
    net.load_state_dict({k: v for k, v in fitted.items() if k not in reinit}, strict=False)
    return reinit


def save_weights(net: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Save `net`'s weights (CPU tensors) with optional metadata (e.g. the model config) for `load_weights`."""
    refuse_optimized(net, f"save_weights({path})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    # through a Python file object, so that a full disk says so (utils/atomic.py); never a truncated file
    with atomic_open(path, "wb", fsync=True) as f:
        torch.save({"format": FORMAT, WEIGHTS_KEY: FORMAT_VERSION, "state_dict": sd, "meta": meta or {}}, f)
    return path


def count_parameters(net: nn.Module) -> int:
    """Number of parameters of `net` (all, trainable or not)."""
    return sum(p.numel() for p in net.parameters())
