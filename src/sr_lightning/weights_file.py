"""A weights file read once into one value: `WeightsFile` (state dict, kind, metadata, format version).

Detection, key conversion, form matching and loading (`sr_lightning.weights`, `sr_lightning.inference.detect`) are
functions of this value, never of the path: the file is opened once. Kinds:

- ``sr_lightning``: a weights file of `save_weights` (``{"format": "sr_lightning", "format_version": n, ...}``), or a
  safetensors file carrying our metadata;
- ``lightning``: a Lightning checkpoint of `SRModule` (``net.``-prefixed ``state_dict``, ``sr_meta``);
- ``official``: any other state dict, possibly wrapped (``params_ema``, ``params``, ``state_dict``, ``model``,
  ``net``) and/or ``module.``-prefixed.

Files are data: pickles are read with ``torch.load(weights_only=True)`` only, the model config in the metadata is
checked by `sr_lightning.archs.model_config` (no ``instantiate``), and programs (TorchScript, ONNX) under a weights
name are refused: they are loaded only when chosen by their own extension or ``backend=``
(`sr_lightning.inference.backends`).
"""

from __future__ import annotations

import io
import json
import math
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sr_lightning.archs.forms import strip_prefix
from sr_lightning.archs.model_config import check_network_size
from sr_lightning.formats import CHECKPOINT_KEY, WEIGHTS_KEY, upgrade_state_dict

FORMAT = "sr_lightning"
StateDict = dict[str, torch.Tensor]
_WRAPPERS = ("params_ema", "params", "state_dict", "model", "net")
#: the metadata keys this package writes (weights files, checkpoints, exports); any other is refused
META_KEYS = frozenset({"model", "scale", "source", "form", "min_input_size", "format_version", "sr_lightning_version"})
_MAX_META_STRING = 4096
_OPT_IN = "TorchScript and ONNX files are programs, loaded only when chosen"


@dataclass(frozen=True)
class WeightsFile:
    """One weights file, read. ``state_dict`` is the network's: ours in today's key names, an official one with its
    wrappers and ``module.`` prefixes removed. ``model`` is the checked model config of the metadata, if any."""

    path: Path
    state_dict: StateDict
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)
    version: int | None = None
    model: dict[str, Any] | None = None

    @property
    def scale(self) -> int | None:
        """The scale the metadata states (None for files without metadata)."""
        scale = self.meta.get("scale", (self.model or {}).get("scale"))
        return int(scale) if scale is not None else None

    def saved_network(self) -> str:
        """``"; the file holds <Net> x<scale> weights"`` from the metadata, else ``""`` (for error messages)."""
        if self.model is None:
            return ""
        return f"; the file holds {self.model['_target_'].rsplit('.', 1)[-1]} x{self.scale or '?'} weights"


def is_torchscript(data: bytes) -> bool:
    """A TorchScript archive: a zip holding compiled ``code/`` (torch.save archives hold ``data.pkl`` only)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _looks_onnx(head: bytes) -> bool:
    """An ONNX ModelProto: protobuf field 1 (``ir_version``, a varint: 0x08) first; no pickle or zip starts so."""
    return head[:1] == b"\x08"


def _refuse_program(path: Path, what: str, backend: str, suffix: str) -> ValueError:
    return ValueError(
        f"{path}: {what} file under a weights name. {_OPT_IN}: name it {suffix} or pass backend={backend} to run it"
    )


def _unpickle(path: Path, data: bytes) -> Any:
    """``torch.load(weights_only=True)`` of a torch.save zip or a legacy pickle; any failure names the file."""
    if data.startswith(b"PK\x03\x04") and is_torchscript(data):
        raise _refuse_program(path, "a TorchScript", "torchscript", "*.ts")
    if _looks_onnx(data[:256]):
        raise _refuse_program(path, "an ONNX", "onnx", "*.onnx")
    if not (data.startswith(b"PK\x03\x04") or data[:1] == b"\x80"):
        raise ValueError(f"{path}: not a PyTorch weights file (it starts with {data[:9]!r}, not a zip or a pickle)")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # objects besides tensors and plain containers: weights_only refuses them
        why = [line.strip() for line in str(err).splitlines() if "WeightsUnpickler error" in line]
        raise ValueError(
            f"{path}: holds Python objects besides tensors, which torch.load(weights_only=True) refuses"
            f"{' (' + why[0] + ')' if why else ''}; save a state dict or use sr_lightning.weights.save_weights"
        ) from err
    except Exception as err:  # truncated zip, damaged pickle: torch raises RuntimeError, EOFError, KeyError, ...
        raise ValueError(
            f"{path}: not a PyTorch weights file, or a damaged one ({type(err).__name__}: {str(err)[:200]})"
        ) from err


def _safetensors(path: Path, data: bytes) -> tuple[StateDict, dict[str, Any]]:
    """A safetensors file: its tensors and the metadata `exporters.safetensors` writes (``{}`` if none)."""
    try:
        from safetensors.torch import load as load_safetensors
    except ImportError as err:
        raise ImportError(f"{path} is a safetensors file: pip install 'sr-lightning[export]' to read it") from err
    try:
        sd = load_safetensors(data)
        length = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + length]).get("__metadata__") or {}
        saved = json.loads(header[FORMAT]) if FORMAT in header else {}
    except Exception as err:  # damaged header or data
        raise ValueError(f"{path}: a damaged safetensors file ({type(err).__name__}: {str(err)[:200]})") from err
    return sd, saved


def _check_meta(meta: Any, path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The metadata as a plain dict, and its checked model config; ValueError naming the offending key."""
    if meta is None:
        return {}, None
    if not isinstance(meta, Mapping):
        raise ValueError(f"{path}: its metadata is a {type(meta).__name__}, not a mapping; nothing was built")
    for key, value in meta.items():
        if key not in META_KEYS:
            raise ValueError(f"{path}: unknown metadata key {key!r} (known: {sorted(META_KEYS)}); nothing was built")
        if key == "model":
            continue
        plain = (
            value is None or isinstance(value, (bool, int, str)) or isinstance(value, float) and math.isfinite(value)
        )
        if not plain or isinstance(value, str) and len(value) > _MAX_META_STRING:
            raise ValueError(f"{path}: metadata key {key!r} holds {type(value).__name__}, not a short plain value")
    scale = meta.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 16):
        raise ValueError(f"{path}: metadata key 'scale' = {scale!r} is not an SR factor (an int from 1 to 16)")
    model = meta.get("model")
    checked = check_network_size(model, str(path)) if model is not None else None
    return dict(meta), checked


def _network_dict(path: Path, obj: Mapping[str, Any], where: str) -> StateDict:
    sd = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not sd:
        raise ValueError(f"{path}: no tensors found in {where} (keys: {list(obj)[:8]})")
    return sd


def parse_weights(path: Path, data: bytes) -> WeightsFile:
    """A `WeightsFile` of the bytes of ``path``."""
    if data[8:9] == b"{":  # safetensors: an 8-byte little-endian header length, then the JSON header
        sd, saved = _safetensors(path, data)
        if not saved:
            return WeightsFile(path, sd, "official")
        meta, model = _check_meta(saved.get("meta"), path)
        version = saved.get(WEIGHTS_KEY, 0)
        return WeightsFile(path, upgrade_state_dict(sd, version, str(path)), FORMAT, meta, version, model)
    obj = _unpickle(path, data)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict or checkpoint, got {type(obj).__name__}")
    if obj.get("format") == FORMAT:
        meta, model = _check_meta(obj.get("meta"), path)
        version = obj.get(WEIGHTS_KEY, 0)
        sd = _network_dict(path, obj.get("state_dict") or {}, "its state_dict")
        return WeightsFile(path, upgrade_state_dict(sd, version, str(path)), FORMAT, meta, version, model)
    if "pytorch-lightning_version" in obj:
        full = obj.get("state_dict") or {}
        net_sd = strip_prefix(full)
        if not net_sd:  # SRModule keeps its network under `net.`: this is some other LightningModule's checkpoint
            raise ValueError(
                f"{path}: a Lightning checkpoint of another LightningModule: its state_dict has no 'net.' keys "
                f"(first keys: {list(full)[:5]}); sr_lightning loads checkpoints of its SRModule, weights files and "
                "official checkpoints"
            )
        meta, model = _check_meta(obj.get("sr_meta"), path)
        version = obj.get(CHECKPOINT_KEY, 0)
        sd = upgrade_state_dict(_network_dict(path, net_sd, "state_dict"), version, str(path))
        return WeightsFile(path, sd, "lightning", meta, version, model)
    for key in _WRAPPERS:  # BasicSR (`params`, `params_ema`) and other common wrappers
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    sd = _network_dict(path, obj, "the file")
    return WeightsFile(path, {k.removeprefix("module."): v for k, v in sd.items()}, "official")


def read_weights(path: str | Path) -> WeightsFile:
    """Read ``path`` (one open) into a `WeightsFile`; FileNotFoundError / ValueError name the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    return parse_weights(path, path.read_bytes())
