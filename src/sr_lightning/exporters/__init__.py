"""Exports of a deploy-form network: ONNX, TorchScript (legacy), safetensors, and the official key layout.

Every export carries the metadata `export_meta` gives (model config, scale, minimum input side), so that
`sr_lightning.load_model` / `upscale` / `test` take the exported file alone.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sr_lightning import __version__
from sr_lightning.formats import FORMAT_VERSION
from sr_lightning.weights import FORMAT

#: the metadata key in ONNX `metadata_props`, TorchScript extra files (`sr_lightning.json`) and safetensors headers
META_KEY = FORMAT


def export_meta(net: nn.Module) -> dict[str, Any]:
    """The description written into exported files (JSON-serialisable)."""
    meta = dict(getattr(net, "sr_meta", {}))
    return {
        "model": meta.get("model"),
        "scale": int(meta.get("scale", net.scale)),
        "min_input_size": int(getattr(net, "min_input_size", 1)),
        "form": "deploy",
        "format_version": FORMAT_VERSION,
        "sr_lightning_version": __version__,
    }
