"""`sr_lightning.export`: ONNX (onnxruntime), TorchScript, safetensors and the official key layout, each reloaded
and compared with PyTorch on real images (two sizes, Set5 PSNR to 4 decimals)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from _scoring import set_psnr
from compose import compose_cfg

from sr_lightning.data.io import load_image
from sr_lightning.exporters.onnx import export_onnx
from sr_lightning.exporters.safetensors import export_safetensors
from sr_lightning.exporters.torchscript import export_torchscript
from sr_lightning.inference.loading import load_model
from sr_lightning.ops.pixels import to_float
from sr_lightning.weights import read_state_dict

pytestmark = pytest.mark.shared
NETS = {"efdn": "efdn_x4_official.pth", "fdiwn": "fdiwn_x4_official.pt"}
EXPORTERS = {"onnx": (export_onnx, ".onnx"), "torchscript": (export_torchscript, ".ts")}


#: Set5 images scored per network: all of them for EFDN; FDIWN's first two (its forward is ~10x slower on CI's two
#: cores); benchmarks/upscale_quality.py and docs/results.md give the whole-set figures.
SET5_LIMIT = {"efdn": None, "fdiwn": 2}


@pytest.fixture(scope="module")
def models(official_weights_dir):
    return {name: load_model(official_weights_dir / file) for name, file in NETS.items()}


@pytest.fixture(scope="module")
def torch_psnr(models, benchmark_dir):
    return {name: set_psnr(m, benchmark_dir, "Set5", 4, limit=SET5_LIMIT[name]) for name, m in models.items()}


def real_inputs(benchmark_dir) -> list[torch.Tensor]:
    """A real LR image at two sizes: whole (128x128) and an odd crop, batch of 2."""
    lr = to_float(load_image(benchmark_dir / "Set5" / "LR_bicubic" / "X4" / "babyx4.png")).permute(2, 0, 1)
    crop = lr[:, 10:87, 5:106]
    return [lr[None], torch.stack([crop, crop.flip(-1)])]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(EXPORTERS))
@pytest.mark.parametrize("net", list(NETS))
def test_export_matches_pytorch(models, torch_psnr, benchmark_dir, tmp_path, net, fmt):
    model = models[net]
    export, suffix = EXPORTERS[fmt]
    path = export(model, tmp_path / f"{net}{suffix}")
    exported = load_model(path)
    assert exported.scale == 4
    for x in real_inputs(benchmark_dir):
        with torch.no_grad():
            diff = (exported(x) - model(x)).abs().max().item()
        assert diff <= 1e-4, (net, fmt, tuple(x.shape), diff)
    assert round(set_psnr(exported, benchmark_dir, "Set5", 4, limit=SET5_LIMIT[net]), 4) == round(torch_psnr[net], 4)
    if fmt == "onnx":
        import onnx

        assert not list(tmp_path.glob("*.data")) and onnx.load(str(path)).opset_import[0].version >= 17


def test_onnx_fp16_export_runs_and_is_labelled(models, torch_psnr, benchmark_dir, tmp_path):
    path = export_onnx(models["efdn"], tmp_path / "efdn16.onnx", fp16=True)
    exported = load_model(path)
    assert "fp16" in exported.label
    fp16, fp32 = set_psnr(exported, benchmark_dir, "Set5", 4), torch_psnr["efdn"]
    assert abs(fp16 - fp32) < 0.05, (fp16, fp32)  # docs/results.md "Exports" gives the measured difference


def test_safetensors_export_describes_itself(models, official_weights_dir, benchmark_dir, tmp_path):
    """Weights files hold the deploy form (the inference form is refused: test_inference_folds.py); loaded back, the
    file runs the default inference path bit for bit."""
    deploy = load_model(official_weights_dir / NETS["fdiwn"], optimize=False)
    path = export_safetensors(deploy, tmp_path / "fdiwn.safetensors")
    again = load_model(path)
    x = real_inputs(benchmark_dir)[1]
    with torch.no_grad():
        assert torch.equal(again(x), models["fdiwn"](x))
    assert read_state_dict(path)[1] == "sr_lightning"


@pytest.mark.parametrize("file", ["efdn_x4_official.pth", "fdiwn_x2_official.pt"])
def test_official_layout_round_trip_through_the_entry_point(official_weights_dir, tmp_path, file):
    """official -> ours -> official: the same keys and tensors (FDIWN keeps its weight-normalised form)."""
    from sr_lightning.export import export

    out = tmp_path / "official.pth"
    cfg = compose_cfg(
        "export", [f"weights={official_weights_dir / file}", "format=official", f"output={out}"], tmp_path
    )
    export(cfg)
    original, _ = read_state_dict(official_weights_dir / file)
    exported = torch.load(out, map_location="cpu", weights_only=True)
    assert list(exported) == list(original) or set(exported) == set(original)
    assert all(torch.equal(exported[k], original[k]) for k in original)


@pytest.mark.slow
def test_export_cli_writes_a_checked_onnx_that_upscale_runs(official_weights_dir, benchmark_dir, tmp_path):
    out = tmp_path / "efdn.onnx"
    env = {**os.environ}
    cmd = [sys.executable, "-m", "sr_lightning.export", f"weights={official_weights_dir / NETS['efdn']}",
           "format=onnx", f"output={out}", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "check: max |export - PyTorch|" in proc.stdout + proc.stderr
    lr = load_image(benchmark_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png")
    from sr_lightning.inference.upscaler import upscale_image

    onnx_out = upscale_image(load_model(out), lr)
    torch_out = upscale_image(load_model(official_weights_dir / NETS["efdn"]), lr)
    assert np.abs(onnx_out.astype(int) - torch_out).max() <= 1  # 1e-4 on [0, 1] can move a rounding by one level


def test_missing_export_extra_says_how_to_install(models, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'sr-lightning\[export\]'"):
        export_onnx(models["efdn"], tmp_path / "x.onnx")
