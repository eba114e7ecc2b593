"""`load_model(weights)`: a ready deploy-form network from any weights file this package reads, or an exported
ONNX / TorchScript file (run through `sr_lightning.inference.backends`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from sr_lightning.archs.forms import to_deploy_form
from sr_lightning.archs.optimize import optimize_for_inference
from sr_lightning.inference.detect import Detected, build_network, detect_model
from sr_lightning.weights import load_weights
from sr_lightning.weights_file import read_weights

log = logging.getLogger(__name__)


def load_network(
    weights: str | Path, model: Mapping[str, Any] | None = None, scale: int | None = None
) -> tuple[nn.Module, Detected]:
    """Detect, build and load `weights` (see `detect_model`); the network in the form the file holds."""
    detected = detect_model(read_weights(weights), model, scale)
    return network_of(detected), detected


def network_of(detected: Detected) -> nn.Module:
    """The network a detection describes, built (checked, `archs.model_config`) and loaded from the file it read, in
    the form the file holds."""
    net = build_network(detected.config, str(detected.file.path) if detected.file else "model config")
    load_weights(net, detected.file)  # type: ignore[arg-type]
    return net


def load_model(
    weights: str | Path,
    model: Mapping[str, Any] | None = None,
    scale: int | None = None,
    backend: str | None = None,
    optimize: bool = True,
) -> Any:
    """A ready-to-run network for `weights`: eval mode, no gradients, deploy form (re-parameterizable blocks and
    weight norm folded), on CPU, float32; `.scale` and `.min_input_size` tell how to call it.

    `weights`: an official checkpoint, a weights file or Lightning checkpoint of this package, a safetensors export,
    or an ONNX (`.onnx`, run by onnxruntime) / TorchScript export (`.ts`, `.torchscript`; both returned as backends
    with the same call convention). Exports are programs: only their own extension or ``backend="onnx"`` /
    ``"torchscript"`` runs one; under a weights name they are refused. `model` (a model config) and `scale` are
    optional overrides that must agree with the file.

    `optimize` (default): the network in its inference form (`archs.optimize.optimize_for_inference`: exact folds,
    channels_last; same outputs up to float rounding, other state-dict keys); False: the plain deploy form, whose
    state dict is the deploy keys (what files are written from).
    """
    from sr_lightning.inference.backends import load_backend

    program = load_backend(weights, backend)
    if program is not None:
        if scale is not None and int(scale) != program.scale:
            raise ValueError(f"scale={scale} contradicts {weights}, an x{program.scale} export")
        return program
    net, detected = load_network(weights, model, scale)
    folded = optimize_for_inference(net) if optimize else to_deploy_form(net)
    log.info("%s: %s x%d (from its %s), folded %s", weights, detected.name, detected.scale, detected.source, folded)
    net.sr_meta = {"model": detected.config, "scale": detected.scale}  # what exporters write into their files
    return net.eval().requires_grad_(False)
