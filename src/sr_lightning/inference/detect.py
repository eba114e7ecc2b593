"""Which network, scale and preset a weights file holds, so that `weights=<file>` alone is enough.

- Our own files (weights files, Lightning checkpoints of `SRModule`, safetensors exports) carry the model config
  they were trained with (`meta["model"]`, `sr_meta["model"]`): it decides.
- Official and third-party state dicts are recognised from their keys and tensor shapes. The candidates are the
  networks of the packaged model configs (`conf/model/*.yaml`: Hydra's `_target_` is the registry); each network
  class reads its hyper-parameters back with ``config_from_state_dict`` (in our key naming; official names are
  converted first with ``convert_official``), and the guess is kept only if the built network takes the weights.
`model=` / `scale=` are optional overrides; one that contradicts the file is a ValueError.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sr_lightning.config import conf_files
from sr_lightning.weights import config_targets, match_state_dict, read_meta, read_state_dict


@dataclass(frozen=True)
class Detected:
    """A weights file's network: its model config (``_target_`` form, ``scale`` filled in) and where that came from."""

    config: dict[str, Any]
    scale: int
    source: str  # "metadata" (our files) or "shapes" (keys and tensor shapes)
    kind: str  # the file kind of `sr_lightning.weights.read_state_dict`

    @property
    def name(self) -> str:
        """The network class name, e.g. ``EFDN``."""
        return str(self.config["_target_"]).rsplit(".", 1)[-1]


def model_targets() -> list[str]:
    """The `_target_` of every packaged model config (``conf/model/*.yaml``), each once, in file-name order."""
    targets: list[str] = []
    for entry in sorted(conf_files().joinpath("model").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            target = OmegaConf.create(entry.read_text()).get("_target_")
            if target and target not in targets:
                targets.append(str(target))
    return targets


def _import(target: str) -> Any:
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


def build_network(config: Mapping[str, Any]) -> torch.nn.Module:
    """Instantiate a model config; only `sr_lightning.*` targets are ever built from a file's description."""
    targets = config_targets(config)
    if not targets or not all(t.startswith("sr_lightning.") for t in targets):
        raise ValueError(f"refusing to build a model config with targets {targets}: only sr_lightning.* networks")
    return instantiate(OmegaConf.create(dict(config)))


def _fits(config: dict[str, Any], sd: dict[str, torch.Tensor]) -> bool:
    net = build_network(config)
    fitted = match_state_dict(net, sd)
    own = net.state_dict()
    return fitted is not None and all(v.shape == own[k].shape for k, v in fitted.items())


def _from_shapes(sd: dict[str, torch.Tensor]) -> tuple[dict[str, Any] | None, list[str]]:
    tried = []
    for target in model_targets():
        cls = _import(target)
        reader = getattr(cls, "config_from_state_dict", None)
        if reader is None:
            continue
        tried.append(target.rsplit(".", 1)[-1])
        candidates = [sd]
        if hasattr(cls, "convert_official"):
            with contextlib.suppress(ValueError):
                candidates.append(cls.convert_official(sd))
        for candidate in candidates:
            config = reader(candidate)
            if config is not None and _fits(config, sd):
                return config, tried
    return None, tried


def detect_model(path: str | Path, model: Mapping[str, Any] | None = None, scale: int | None = None) -> Detected:
    """Detect the network of `path`; `model` (a model config) and `scale` override, and must agree with the file."""
    sd, kind = read_state_dict(path)
    meta = read_meta(path) if kind != "official" else {}
    saved = meta.get("model")
    if isinstance(saved, Mapping) and config_targets(saved):
        config, source = dict(saved), "metadata"
        found = meta.get("scale", config.get("scale"))
    elif model is not None and model.get("_target_"):  # the user's config decides; its scale from the shapes
        guess = _from_shapes(sd)[0] or {}
        contradicted = guess and guess["_target_"] != model["_target_"]  # reported below
        config, source = (guess, "shapes") if contradicted else (dict(model), "model=")
        found = guess.get("scale")
    else:
        config, tried = _from_shapes(sd)
        if config is None:
            raise ValueError(
                f"{path}: no network of this package matches its keys and shapes (tried {', '.join(tried)}; "
                f"{len(sd)} tensors, first keys {list(sd)[:4]}). If it is one of them with unusual options, "
                "pass model=<name> with those options and scale=<s>."
            )
        source, found = "shapes", config.get("scale")  # absent: the shapes do not show it (FSRCNN, VDSR)
    if found is None and scale is None:
        raise ValueError(f"{path}: the file does not say its scale; pass scale=<s>")
    if scale is not None and found is not None and int(scale) != int(found):
        raise ValueError(f"scale={scale} contradicts {path}, which holds x{found} weights (from its {source})")
    final_scale = int(scale if found is None else found)
    if model is not None:
        model = OmegaConf.to_container(OmegaConf.create(dict(model)), resolve=False)  # type: ignore[assignment]
        if model.get("_target_") != config["_target_"]:
            raise ValueError(
                f"model={model.get('_target_')} contradicts {path}, which holds {config['_target_']} weights "
                f"(from its {source})"
            )
        config = dict(model)
    config["scale"] = final_scale
    return Detected(config=config, scale=final_scale, source=source, kind=kind)
