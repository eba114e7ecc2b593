"""safetensors export: the deploy-form state dict, with `export_meta` in the header (read back by
`sr_lightning.weights`, so the file works as `weights=` everywhere)."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from sr_lightning.archs.optimize import refuse_optimized
from sr_lightning.exporters import META_KEY, export_meta
from sr_lightning.exporters.onnx import require
from sr_lightning.formats import FORMAT_VERSION
from sr_lightning.utils.atomic import atomic_path


def export_safetensors(net: nn.Module, path: str | Path) -> Path:
    """Write `net`'s state dict (contiguous CPU tensors) and its metadata."""
    refuse_optimized(net, f"export_safetensors({path})")
    require("safetensors")
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    header = {META_KEY: json.dumps({"format_version": FORMAT_VERSION, "meta": export_meta(net)})}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=header)
    return path
