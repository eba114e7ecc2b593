"""`python -m sr_lightning.export weights=<file> format=<onnx|torchscript|safetensors|official> output=<file>`.

Examples:
    python -m sr_lightning.export weights=../shared/weights/official/efdn_x4_official.pth format=onnx output=efdn.onnx
    python -m sr_lightning.export weights=logs/train/runs/<run>/weights/model.pth format=safetensors
The exported file (except `official`) carries the model description, so `upscale` / `test` / `load_model` take it
alone. With `check=true` (default) it is reloaded and compared with PyTorch at two input sizes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from sr_lightning.config import CONFIG_PATH, register_resolvers
from sr_lightning.exporters.official import export_official
from sr_lightning.exporters.onnx import export_onnx
from sr_lightning.exporters.safetensors import export_safetensors
from sr_lightning.exporters.torchscript import export_torchscript
from sr_lightning.inference.loading import load_model, load_network

log = logging.getLogger(__name__)
register_resolvers()

SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts", "safetensors": ".safetensors", "official": ".pth"}


def export(cfg: DictConfig) -> Path:
    """Export `cfg.weights` as `cfg.format`; returns the written path."""
    if cfg.format not in SUFFIXES:
        raise ValueError(f"format must be one of {sorted(SUFFIXES)}, got {cfg.format!r}")
    model = OmegaConf.to_container(cfg.model, resolve=False) if cfg.get("model") else None
    if model is not None:
        model.pop("scale", None)
    out = Path(cfg.output or Path(cfg.paths.output_dir) / (Path(cfg.weights).stem + SUFFIXES[cfg.format]))
    if cfg.format == "official":
        net, detected = load_network(cfg.weights, model, cfg.get("scale"))
        export_official(net, out)
        log.info("%s x%d in the official key layout: %s", detected.name, detected.scale, out)
        return out
    net = load_model(cfg.weights, model, cfg.get("scale"))
    if not isinstance(net, torch.nn.Module) or isinstance(net, torch.jit.ScriptModule):
        raise ValueError(f"{cfg.weights} is already an export; export from a weights file or checkpoint")
    if cfg.format == "onnx":
        export_onnx(net, out, opset=int(cfg.opset), fp16=bool(cfg.fp16), dynamo=bool(cfg.dynamo))
    elif cfg.format == "torchscript":
        export_torchscript(net, out)
    else:
        export_safetensors(net, out)
    log.info("wrote %s (%s)", out, cfg.format)
    if cfg.check:
        diff = max_difference(net, out)
        tol = float(cfg.check_tolerance) * (10 if cfg.fp16 else 1)
        log.info("check: max |export - PyTorch| = %.3g on [0, 1] (tolerance %.3g)", diff, tol)
        if diff > tol:
            raise RuntimeError(f"{out}: the export differs from PyTorch by {diff:.3g} > {tol:.3g}")
    return out


def probe_image(n: int, h: int, w: int) -> torch.Tensor:
    """An image-like [0, 1] input (smooth colour gradients and stripes): white noise drives these networks to
    outputs far outside [0, 1], where float differences are larger than on any photograph."""
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None, :]
    channels = [0.5 + 0.4 * torch.sin(6.0 * x + 3.0 * y + k) * torch.cos(4.0 * y - k) for k in range(3)]
    return torch.stack(channels)[None].expand(n, -1, -1, -1).contiguous()


def max_difference(net: Any, path: str | Path, sizes: tuple[tuple[int, int], ...] = ((48, 64), (71, 53))) -> float:
    """Largest |exported - PyTorch| over the outputs for `probe_image` inputs of two sizes (batch 2 for the second)."""
    exported = load_model(path)
    worst = 0.0
    side = max(int(getattr(net, "min_input_size", 1)), 1)
    for i, (h, w) in enumerate(sizes):
        x = probe_image(i + 1, max(h, side), max(w, side))
        with torch.no_grad():
            worst = max(worst, (exported(x).float() - net(x).float()).abs().max().item())
    return worst


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    export(cfg)


if __name__ == "__main__":
    main()
