"""Exported files as inference backends with the `Runner` call convention (float32 NCHW [0, 1] in and out,
`.scale`, `.min_input_size`, `.label`): ONNX through onnxruntime, TorchScript through `torch.jit.load`.

Both read the metadata that `sr_lightning.exporters` writes; an export without it is refused (its scale is unknown).
These files are programs: they run only when the user chose them, by their own extension (`.onnx`; `.ts` or
`.torchscript`) or an explicit ``backend=onnx|torchscript``. The file's contents never decide that it runs: the
same archive under a weights name (`.pth`, `.pt`, `.ckpt`, `.safetensors`) is refused by the weights reader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sr_lightning.exporters import META_KEY
from sr_lightning.exporters.onnx import require
from sr_lightning.exporters.torchscript import EXTRA_FILE
from sr_lightning.inference.runner import Runner


class OnnxBackend:
    """An ONNX export run by onnxruntime (CUDA provider when available, else CPU)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        require("onnxruntime")
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        meta = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if meta is None:
            raise ValueError(f"{path}: an ONNX file without sr_lightning metadata (export it with sr_lightning.export)")
        self.meta: dict[str, Any] = json.loads(meta)
        self.scale = int(self.meta["scale"])
        self.min_input_size = int(self.meta.get("min_input_size", 1))
        self.device = torch.device("cpu")  # inputs and outputs go through host memory
        self.input_name = self.session.get_inputs()[0].name
        provider = self.session.get_providers()[0].replace("ExecutionProvider", "")
        self.label = f"ONNX Runtime ({provider}, {self.meta.get('precision', 'fp32')}) x{self.scale}: {path}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feed = {self.input_name: np.ascontiguousarray(x.detach().cpu().float().numpy())}
        return torch.from_numpy(self.session.run(None, feed)[0]).float()


def load_torchscript(path: str | Path, device: str | torch.device | None = "cpu") -> Runner:
    """A TorchScript export as a `Runner` (float32)."""
    extra = {EXTRA_FILE: ""}
    module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    if not extra[EXTRA_FILE]:
        raise ValueError(f"{path}: a TorchScript file without sr_lightning metadata (export with sr_lightning.export)")
    meta = json.loads(extra[EXTRA_FILE])
    return Runner(module, device=device, scale=meta["scale"], min_input_size=meta.get("min_input_size", 1))


#: backend= values: the two program formats, and "weights" (a weights file, whatever its name)
BACKENDS = ("onnx", "torchscript", "weights")
ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript")


def backend_of(path: str | Path, backend: str | None = None) -> str:
    """``onnx``, ``torchscript`` or ``weights``: ``backend`` if given, else the file's extension decides."""
    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: choose one of {', '.join(BACKENDS)} (or leave it unset)")
        return backend
    suffix = Path(path).suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    return "torchscript" if suffix in TORCHSCRIPT_SUFFIXES else "weights"


def load_backend(path: str | Path, backend: str | None = None) -> OnnxBackend | Runner | None:
    """The backend for an ONNX / TorchScript export chosen by its extension or ``backend``; None for weights files
    (loaded as networks, `sr_lightning.weights_file`)."""
    path = Path(path).expanduser()
    chosen = backend_of(path, backend)
    if chosen == "weights":
        return None
    if not path.is_file():
        raise FileNotFoundError(f"{'ONNX' if chosen == 'onnx' else 'TorchScript'} file not found: {path}")
    return OnnxBackend(path) if chosen == "onnx" else load_torchscript(path)
