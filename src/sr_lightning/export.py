"""`python -m sr_lightning.export weights=<file> format=<onnx|torchscript|safetensors|official> output=<file>`.

Examples:
    python -m sr_lightning.export weights=../shared/weights/official/efdn_x4_official.pth format=onnx output=efdn.onnx
    python -m sr_lightning.export weights=logs/train/runs/<run>/weights/model.pth format=safetensors
The exported file (except `official`) carries the model description, so `upscale` / `test` / `load_model` take it
alone. The export is written to a hidden temporary file beside `output`; with `check=true` (default) that file is
reloaded and compared with PyTorch at two input sizes, and only a file that passes is renamed to `output`: a failed
check leaves nothing under the final name. `output` may not be the weights file itself. TorchScript is a program,
loaded only when chosen (`.ts` / `.torchscript`, or `backend=torchscript`), so its output takes such a name: a
weights-like name (`.pth`, `.pt`, `.ckpt`, `.safetensors`) is refused.
"""

from __future__ import annotations

from sr_lightning.process import set_process_defaults

set_process_defaults()  # before torch allocates: see sr_lightning/process.py

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from sr_lightning.config import entry_point, model_override
from sr_lightning.exporters.official import export_official
from sr_lightning.exporters.onnx import export_onnx
from sr_lightning.exporters.safetensors import export_safetensors
from sr_lightning.exporters.torchscript import export_torchscript
from sr_lightning.inference.loading import load_model, load_network
from sr_lightning.utils.atomic import atomic_path

log = logging.getLogger(__name__)

SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts", "safetensors": ".safetensors", "official": ".pth"}
#: names that the weights reader takes for state dicts: a program (TorchScript) under one would be refused on loading
WEIGHTS_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".bin")
#: how each format's check reloads the file (programs only by explicit choice)
CHECK_BACKENDS = {"onnx": "onnx", "torchscript": "torchscript", "safetensors": "weights"}


def output_path(cfg: DictConfig) -> Path:
    """Where the export goes; ValueError for the weights file itself or a TorchScript file under a weights name."""
    out = Path(cfg.output or Path(cfg.paths.output_dir) / (Path(cfg.weights).stem + SUFFIXES[cfg.format]))
    if out.expanduser().resolve() == Path(cfg.weights).expanduser().resolve():
        raise ValueError(
            f"output={out} is the weights file itself: exporting over it would lose it; choose another name"
        )
    if cfg.format == "torchscript" and out.suffix.lower() in WEIGHTS_SUFFIXES:
        raise ValueError(
            f"output={out}: a TorchScript program under a weights name ({out.suffix}) would be refused when loaded; "
            "name it *.ts or *.torchscript"
        )
    return out


def export(cfg: DictConfig) -> Path:
    """Export `cfg.weights` as `cfg.format`; returns the written path."""
    if cfg.format not in SUFFIXES:
        raise ValueError(f"format must be one of {sorted(SUFFIXES)}, got {cfg.format!r}")
    model = model_override(cfg)
    out = output_path(cfg)
    if cfg.format == "official":
        net, detected = load_network(cfg.weights, model, cfg.get("scale"))
        export_official(net, out)
        log.info("%s x%d in the official key layout: %s", detected.name, detected.scale, out)
        return out
    net = load_model(cfg.weights, model, cfg.get("scale"), optimize=False)  # files hold the deploy form
    if not isinstance(net, torch.nn.Module) or isinstance(net, torch.jit.ScriptModule):
        raise ValueError(f"{cfg.weights} is already an export; export from a weights file or checkpoint")
    with atomic_path(out, fsync=True) as staged:  # checked under a hidden name, renamed only if it passes
        if cfg.format == "onnx":
            export_onnx(net, staged, opset=int(cfg.opset), fp16=bool(cfg.fp16), dynamo=bool(cfg.dynamo))
        elif cfg.format == "torchscript":
            export_torchscript(net, staged)
        else:
            export_safetensors(net, staged)
        if cfg.check:
            diff = max_difference(net, staged, backend=CHECK_BACKENDS[cfg.format])
            tol = float(cfg.check_tolerance) * (10 if cfg.fp16 else 1)
            log.info("check: max |export - PyTorch| = %.3g on [0, 1] (tolerance %.3g)", diff, tol)
            if diff > tol:
                raise RuntimeError(f"{out}: the export differs from PyTorch by {diff:.3g} > {tol:.3g}; not written")
    log.info("wrote %s (%s)", out, cfg.format)
    return out


def probe_image(n: int, h: int, w: int) -> torch.Tensor:
    """An image-like [0, 1] input (smooth colour gradients and stripes): white noise drives these networks to
    outputs far outside [0, 1], where float differences are larger than on any photograph."""
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None, :]
    channels = [0.5 + 0.4 * torch.sin(6.0 * x + 3.0 * y + k) * torch.cos(4.0 * y - k) for k in range(3)]
    return torch.stack(channels)[None].expand(n, -1, -1, -1).contiguous()


def max_difference(
    net: Any,
    path: str | Path,
    sizes: tuple[tuple[int, int], ...] = ((48, 64), (71, 53)),
    backend: str | None = None,
) -> float:
    """Largest |exported - PyTorch| over the outputs for `probe_image` inputs of two sizes (batch 2 for the second);
    `backend` as for `load_model` (the staged file's name does not choose it)."""
    exported = load_model(path, backend=backend)
    worst = 0.0
    side = max(int(getattr(net, "min_input_size", 1)), 1)
    for i, (h, w) in enumerate(sizes):
        x = probe_image(i + 1, max(h, side), max(w, side))
        with torch.no_grad():
            worst = max(worst, (exported(x).float() - net(x).float()).abs().max().item())
    return worst


@entry_point("export")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    export(cfg)


if __name__ == "__main__":
    main()
