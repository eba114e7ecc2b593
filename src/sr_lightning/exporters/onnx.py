"""ONNX export (one self-contained file, opset >= 17, dynamic batch / height / width), checked by onnxruntime.

Exporter: the TorchScript-based `torch.onnx.export(..., dynamo=False)` by default. torch 2.13's default dynamo
exporter (`dynamo=true`, needs onnxscript) gives the same graph for EFDN but took 237 s for FDIWN's 1,591-tensor
graph on this 2-core machine, against 14 s (docs/results.md "Exports"); both are in the `export` extra.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from sr_lightning.exporters import META_KEY, export_meta
from sr_lightning.utils.atomic import atomic_path

MIN_OPSET = 17


def require(module: str) -> None:
    """ImportError with the install hint when an optional export dependency is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{module} is not installed: pip install 'sr-lightning[export]'")


def export_onnx(
    net: nn.Module, path: str | Path, opset: int = MIN_OPSET, fp16: bool = False, dynamo: bool = False
) -> Path:
    """Write `net` (deploy form, eval) as ONNX with input ``lr`` and output ``sr`` (N,3,H,W float [0, 1]).

    `fp16=True` stores weights and compute in float16 with float32 inputs and outputs (onnxruntime's converter).
    """
    require("onnx")
    import onnx

    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    side = max(64, int(getattr(net, "min_input_size", 1)))
    probe = torch.rand(1, 3, side, side)
    path = Path(path)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
            if dynamo:
                require("onnxscript")
                dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("h"), 3: torch.export.Dim("w")}
                torch.onnx.export(
                    net, (probe,), str(tmp), dynamo=True, opset_version=opset, dynamic_shapes=(dims,),
                    input_names=["lr"], output_names=["sr"], external_data=False,
                )  # fmt: skip
            else:
                torch.onnx.export(
                    net, (probe,), str(tmp), dynamo=False, opset_version=opset, input_names=["lr"],
                    output_names=["sr"], dynamic_axes={"lr": {0: "batch", 2: "h", 3: "w"},
                                                       "sr": {0: "batch", 2: "H", 3: "W"}},
                )  # fmt: skip
        model = onnx.load(str(tmp))
        if fp16:
            from onnxruntime.transformers.float16 import convert_float_to_float16

            model = convert_float_to_float16(model, keep_io_types=True)
        meta = export_meta(net) | {"precision": "fp16" if fp16 else "fp32"}
        entry = model.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(meta)
        onnx.save(model, str(tmp), save_as_external_data=False)
    return path
