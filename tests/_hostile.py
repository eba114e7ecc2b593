"""Hostile weights files, built at test time (never stored): each tries to make a loader run code that writes
`marker`, or is a program under a weights name, or carries metadata no loader may accept."""

from __future__ import annotations

import json
import pathlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sr_lightning.archs.efdn import EFDN


class Payload:
    """Unpickled, it touches `marker`: what a planted pickle does (the callable is stored by name, not this class)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def tiny_efdn() -> nn.Module:
    return EFDN(scale=2, channels=8, num_blocks=3, esa_channels=2)


def chains(marker: Path, planted: Path) -> dict[str, dict[str, Any]]:
    """Model configs whose `_target_`s walk through the package's module attributes to code (Hydra resolves a dotted
    path attribute by attribute). Each writes `marker` when given to `hydra.utils.instantiate`."""
    return {
        "pathlib": {
            "_target_": "sr_lightning.utils.resume.Path.touch",
            "_args_": [{"_target_": "sr_lightning.utils.resume.Path", "_args_": [str(marker)]}],
        },
        # (Hydra blocklists os.system, os.popen and subprocess by name; a blocklist cannot close this class)
        "shutil": {"_target_": "sr_lightning.utils.atomic.shutil.copyfile", "src": str(planted), "dst": str(marker)},
        "torch_save": {"_target_": "sr_lightning.weights.torch.save", "obj": "pwned", "f": str(marker)},
        "os_open": {"_target_": "sr_lightning.utils.atomic.os.open", "_args_": [str(marker), 65]},  # O_CREAT|O_WRONLY
        # a network of the package whose block factory node unpickles a planted file with weights_only=False
        "nested_torch_load": {
            "_target_": "sr_lightning.archs.efdn.EFDN",
            "scale": 2,
            "conv3x3": {"_target_": "sr_lightning.weights.torch.load", "f": str(planted), "weights_only": False},
        },
    }


def _weights(path: Path, meta: dict[str, Any]) -> Path:
    sd = tiny_efdn().state_dict()
    torch.save({"format": "sr_lightning", "format_version": 1, "state_dict": sd, "meta": meta}, path)
    return path


def _checkpoint(path: Path, sr_meta: dict[str, Any] | None, extra: dict[str, Any] | None = None) -> Path:
    sd = {f"net.{k}": v for k, v in tiny_efdn().state_dict().items()}
    ckpt: dict[str, Any] = {"pytorch-lightning_version": "2.6.6", "state_dict": sd, "sr_format_version": 1}
    if sr_meta is not None:
        ckpt["sr_meta"] = sr_meta
    torch.save({**ckpt, **(extra or {})}, path)
    return path


def _safetensors(path: Path, meta: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    header = {"sr_lightning": json.dumps({"format_version": 1, "meta": meta})}
    save_file({k: v.contiguous() for k, v in tiny_efdn().state_dict().items()}, str(path), metadata=header)
    return path


def build_hostile_files(root: Path, marker: Path) -> dict[str, Path]:
    """Every hostile file, by name; the pickles and chains all aim at `marker`."""
    root.mkdir(parents=True, exist_ok=True)
    planted = root / "planted.pkl"
    torch.save(Payload(marker), planted)
    chain = chains(marker, planted)
    files = {f"chain_{name}.pth": _weights(root / f"chain_{name}.pth", {"model": cfg, "scale": 2})
             for name, cfg in chain.items()}  # fmt: skip
    files["chain_torch_save.ckpt"] = _checkpoint(root / "chain_torch_save.ckpt", {"model": chain["torch_save"]})
    files["chain_shutil.safetensors"] = _safetensors(root / "chain_shutil.safetensors", {"model": chain["shutil"]})
    files["payload.pth"] = root / "payload.pth"
    torch.save({"head.weight": torch.zeros(1), "x": Payload(marker)}, files["payload.pth"])
    files["payload.ckpt"] = _checkpoint(root / "payload.ckpt", None, {"callbacks": {"x": Payload(marker)}})
    files["torchscript.pth"] = root / "torchscript.pth"
    torch.jit.save(torch.jit.script(nn.Conv2d(3, 3, 1)), str(files["torchscript.pth"]))
    files["onnx.pth"] = root / "onnx.pth"
    torch.onnx.export(nn.Conv2d(3, 3, 1), (torch.rand(1, 3, 8, 8),), str(files["onnx.pth"]), dynamo=False)
    ok = {"_target_": "sr_lightning.archs.efdn.EFDN", "scale": 2, "channels": 8, "num_blocks": 3, "esa_channels": 2}
    nested: dict[str, Any] = {"v": 1}
    for _ in range(200):
        nested = {"v": nested}
    bad_meta = {
        "meta_unknown_key.pth": {"model": ok, "scale": 2, "run_this": "rm -rf /"},
        "meta_unknown_option.pth": {"model": {**ok, "hook": "os.system"}, "scale": 2},
        "meta_wrong_type.pth": {"model": {**ok, "channels": "8"}, "scale": 2},
        "meta_wrong_scale.pth": {"model": ok, "scale": "2"},
        "meta_huge_value.pth": {"model": {**ok, "channels": 10**9}, "scale": 2},
        "meta_huge_network.pth": {"model": {**ok, "channels": 4096, "num_blocks": 64}, "scale": 2},
        "meta_long_list.pth": {"model": {**ok, "conv3x3": {"_target_": "sr_lightning.archs.edbb.make_edbb",
                                                            "_partial_": True, "branches": ["conv3x3"] * 100_000}}},
        "meta_deep.pth": {"model": {**ok, "esa_channels": nested}, "scale": 2},
        "meta_not_a_mapping.pth": {"model": ["sr_lightning.archs.efdn.EFDN"], "scale": 2},
    }  # fmt: skip
    for name, meta in bad_meta.items():
        files[name] = _weights(root / name, meta)
    return files


#: every hostile file that tries to run code (its loading must leave `marker` absent)
CODE_FILES = (
    "chain_pathlib.pth",
    "chain_shutil.pth",
    "chain_torch_save.pth",
    "chain_os_open.pth",
    "chain_nested_torch_load.pth",
    "chain_torch_save.ckpt",
    "chain_shutil.safetensors",
    "payload.pth",
    "payload.ckpt",
)
