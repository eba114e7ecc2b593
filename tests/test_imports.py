"""`upscale`, `export` and `load_model` import only what they need (issue 21): no Lightning, torchmetrics or wandb
(the training stack), and no ONNX, kornia or torchvision where the path does not use them. Each check runs in a
fresh interpreter and reads its `sys.modules`, so a module imported by an earlier test cannot hide an import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

#: the training stack: never needed to load weights, upscale or export
TRAINING = ("lightning", "pytorch_lightning", "lightning_fabric", "torchmetrics", "wandb")
#: heavy packages that loading a weights file, upscaling and exporting to safetensors never use
UNUSED = ("onnx", "onnxruntime", "onnxscript", "kornia", "torchvision", "matplotlib")
EFDN_X4 = "efdn_x4_official.pth"


def imported(code: str, cwd: Path | None = None) -> set[str]:
    """The top-level packages in `sys.modules` after running `code` in a fresh interpreter."""
    probe = textwrap.dedent(code) + textwrap.dedent(
        """
        import json as _json, sys as _sys
        print("MODULES=" + _json.dumps(sorted({name.split(".")[0] for name in _sys.modules})))
        """
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [text for text in proc.stdout.splitlines() if text.startswith("MODULES=")][-1]
    return set(json.loads(line.removeprefix("MODULES=")))


def assert_lean(modules: set[str], banned: tuple[str, ...] = TRAINING + UNUSED) -> None:
    loaded = sorted(modules & set(banned))
    assert not loaded, f"imported but not needed: {loaded}"


@pytest.mark.parametrize("module", ["sr_lightning.upscale", "sr_lightning.export", "sr_lightning.inference.loading"])
def test_entry_modules_import_no_training_stack(module):
    assert_lean(imported(f"import {module}"))


def test_package_import_is_light():
    """`import sr_lightning` (and reaching `load_model` through it) leaves torch unimported until it is called."""
    modules = imported("import sr_lightning; sr_lightning.__version__")
    assert "torch" not in modules
    assert_lean(modules)


@pytest.mark.shared
def test_load_model_of_official_weights_is_lean(official_weights_dir):
    modules = imported(f"from sr_lightning import load_model; load_model({str(official_weights_dir / EFDN_X4)!r})")
    assert "torch" in modules  # the probe ran
    assert_lean(modules)


@pytest.mark.shared
def test_upscale_command_is_lean(official_weights_dir, tmp_path):
    """The whole `python -m sr_lightning.upscale` run (imports made while it runs included) writes its image
    without the training stack or ONNX."""
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(image)
    argv = ["upscale", f"weights={official_weights_dir / EFDN_X4}", f"input={image}", f"output={tmp_path / 'out'}",
            f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    modules = imported(
        f"""
        import runpy, sys
        sys.argv = {argv!r}
        runpy.run_module("sr_lightning.upscale", run_name="__main__")
        """,
        cwd=tmp_path,
    )
    assert (tmp_path / "out" / "in_x4.png").is_file()
    assert_lean(modules)


@pytest.mark.shared
def test_safetensors_export_command_is_lean(official_weights_dir, tmp_path):
    """`python -m sr_lightning.export format=safetensors` (with its reload check) needs neither Lightning nor ONNX."""
    out = tmp_path / "efdn.safetensors"
    argv = ["export", f"weights={official_weights_dir / EFDN_X4}", "format=safetensors", f"output={out}",
            f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    modules = imported(
        f"""
        import runpy, sys
        sys.argv = {argv!r}
        runpy.run_module("sr_lightning.export", run_name="__main__")
        """,
        cwd=tmp_path,
    )
    assert out.is_file()
    assert_lean(modules)
