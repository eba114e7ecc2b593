"""Which network, scale and preset a weights file holds, so that `weights=<file>` alone is enough.

- Our own files (weights files, Lightning checkpoints of `SRModule`, safetensors exports) carry the model config
  they were trained with (`meta["model"]`, `sr_meta["model"]`, checked by `sr_lightning.archs.model_config`): it
  decides.
- Official and third-party state dicts are recognised from their keys and tensor shapes. The candidates are the
  networks of the catalog (`sr_lightning.archs.catalog.ARCHITECTURES`); each reads its hyper-parameters back with its
  ``config_from_state_dict`` (in our key naming; official names are converted first with ``convert_official``), and
  the guess is kept only if the built network takes the weights.
`model=` / `scale=` are optional overrides; one that contradicts the file is a ValueError. Every function here takes
a `WeightsFile` (or a path, read once).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from sr_lightning.archs.catalog import ARCHITECTURES
from sr_lightning.archs.forms import fit_state_dict
from sr_lightning.archs.model_config import build_network
from sr_lightning.weights_file import WeightsFile, read_weights

__all__ = ["Detected", "build_network", "detect_model"]


@dataclass(frozen=True)
class Detected:
    """A weights file's network: its model config (``_target_`` form, ``scale`` filled in) and where that came from."""

    config: dict[str, Any]
    scale: int
    source: str  # "metadata" (our files) or "shapes" (keys and tensor shapes)
    kind: str  # the file kind of `sr_lightning.weights_file.WeightsFile`
    file: WeightsFile | None = None  # the file as read (load it with `load_weights(net, detected.file)`)

    @property
    def name(self) -> str:
        """The network class name, e.g. ``EFDN``."""
        return str(self.config["_target_"]).rsplit(".", 1)[-1]


def _fits(config: dict[str, Any], sd: dict[str, torch.Tensor]) -> bool:
    net = build_network(config)
    fitted = fit_state_dict(net, sd)
    own = net.state_dict()
    return fitted is not None and all(v.shape == own[k].shape for k, v in fitted.items())


def _from_shapes(sd: dict[str, torch.Tensor]) -> tuple[dict[str, Any] | None, list[str]]:
    tried = []
    for arch in ARCHITECTURES:
        if arch.config_from_state_dict is None:
            continue
        tried.append(arch.name)
        candidates = [sd]
        if arch.convert_official is not None:
            with contextlib.suppress(ValueError):
                candidates.append(arch.convert_official(sd))
        for candidate in candidates:
            config = arch.config_from_state_dict(candidate)
            if config is not None and _fits(config, sd):
                return config, tried
    return None, tried


def detect_model(
    weights: str | Path | WeightsFile, model: Mapping[str, Any] | None = None, scale: int | None = None
) -> Detected:
    """Detect the network of a weights file; `model` (a model config) and `scale` override, and must agree with it."""
    wf = weights if isinstance(weights, WeightsFile) else read_weights(weights)
    path, sd, kind = wf.path, wf.state_dict, wf.kind
    if wf.model is not None:
        config, source = dict(wf.model), "metadata"
        found = wf.scale
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
    return Detected(config=config, scale=final_scale, source=source, kind=kind, file=wf)
