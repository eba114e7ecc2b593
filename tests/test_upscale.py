"""`upscale` on real images: the CLI as users type it (formats, bad inputs, lists with awkward names, skipping),
its scores against the test loop's, tiling / ensemble / padding, and out-of-memory retries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _scoring import score, set_psnr
from compose import compose_cfg
from PIL import Image

from sr_lightning.data.io import load_image
from sr_lightning.inference.ensemble import self_ensemble
from sr_lightning.inference.loading import load_model
from sr_lightning.inference.tiling import run_tiled
from sr_lightning.inference.upscaler import resolve_tile, upscale_image
from sr_lightning.ops.pixels import to_float, to_uint8

EFDN_X4 = "efdn_x4_official.pth"


def run_upscale(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sr_lightning.upscale", *overrides, f"hydra.run.dir={cwd / 'run'}"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.shared
@pytest.mark.slow
def test_upscale_scores_what_the_test_loop_scores(official_weights_dir, benchmark_dir, tmp_path):
    """The CLI's PNGs of the official Set5 x4 LR, scored, give exactly the test loop's Set5 numbers."""
    weights = official_weights_dir / EFDN_X4
    proc = run_upscale(
        f"weights={weights}", f"input={benchmark_dir / 'Set5' / 'LR_bicubic' / 'X4'}", f"output={tmp_path / 'out'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = []
    for hr_path in sorted((benchmark_dir / "Set5" / "HR").glob("*.png")):
        sr = np.asarray(Image.open(tmp_path / "out" / f"{hr_path.stem}x4_x4.png"))
        scores.append(score(sr, load_image(hr_path), 4))
    from sr_lightning.test import evaluate

    cfg = compose_cfg(
        "test", ["model=efdn", "model.conv3x3=null", "scale=4", f"weights={weights}", "test_sets=[Set5]",
                 f"paths.benchmark_dir={benchmark_dir}",], tmp_path / "test",
    )  # fmt: skip
    row = evaluate(cfg)["Set5"]
    assert np.mean([s[0] for s in scores]) == pytest.approx(row["psnr"], abs=1e-9)
    assert np.mean([s[1] for s in scores]) == pytest.approx(row["ssim"], abs=1e-9)
    summary = json.loads((tmp_path / "run" / "upscale.json").read_text())
    assert summary["counts"] == {"ok": 5}


def _make_inputs(lr_dir: Path, folder: Path) -> dict[str, Path]:
    """Real LR crops in every form the CLI must keep: RGB, gray, RGBA, 16-bit gray, palette, EXIF-rotated JPEG,
    a corrupt file; names with spaces and commas."""
    folder.mkdir(parents=True)
    rgb = np.asarray(Image.open(lr_dir / "baboonx4.png").convert("RGB"))[:40, :52]
    gray = np.asarray(Image.open(lr_dir / "bridgex4.png"))[:36, :44]
    files = {
        "rgb": folder / "baboon crop, 1.png",
        "gray": folder / "bridge.png",
        "rgba": folder / "alpha.png",
        "gray16": folder / "sixteen.png",
        "palette": folder / "palette.gif",
        "exif": folder / "rotated.jpg",
        "corrupt": folder / "broken.png",
    }
    Image.fromarray(rgb).save(files["rgb"])
    Image.fromarray(gray).save(files["gray"])
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).round().astype(np.uint8), (rgb.shape[0], 1))
    Image.fromarray(np.dstack([rgb, alpha])).save(files["rgba"])
    Image.fromarray(gray.astype(np.uint16) * 257 + 3).save(files["gray16"])  # I;16, not a multiple of 257
    Image.fromarray(rgb).quantize(64).save(files["palette"])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(files["exif"], quality=95, exif=exif)
    files["corrupt"].write_bytes(files["rgb"].read_bytes()[:200])
    return files


@pytest.mark.shared
@pytest.mark.slow
def test_upscale_cli_keeps_formats_and_reports_bad_inputs(official_weights_dir, benchmark_dir, tmp_path):
    files = _make_inputs(benchmark_dir / "Set14" / "LR_bicubic" / "X4", tmp_path / "my photos")
    listing = tmp_path / "list.txt"
    missing = tmp_path / "my photos" / "not here.png"
    listing.write_text("# inputs\n" + "\n".join(str(p) for p in [*files.values(), missing]) + "\n\n")
    out = tmp_path / "out"
    args = (f"weights={official_weights_dir / EFDN_X4}", f"input={listing}", f"output={out}")
    proc = run_upscale(*args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the corrupt and the missing file failed, the rest went on
    summary = json.loads((tmp_path / "run" / "upscale.json").read_text())
    status = {Path(r["input"]).name: r["status"] for r in summary["images"]}
    assert status == {p.name: "failed" if k == "corrupt" else "ok" for k, p in files.items()} | {
        "not here.png": "failed"
    }
    log = proc.stdout + proc.stderr
    assert "failed: " in log and "broken.png" in log and "not here.png" in log

    def opened(name: str) -> Image.Image:
        return Image.open(out / name)

    model = load_model(official_weights_dir / EFDN_X4)
    rgb = np.asarray(Image.open(files["rgb"]))
    assert np.array_equal(np.asarray(opened("baboon crop, 1_x4.png")), upscale_image(model, rgb))
    assert opened("bridge_x4.png").mode == "L" and opened("bridge_x4.png").size == (44 * 4, 36 * 4)
    rgba = opened("alpha_x4.png")
    assert rgba.mode == "RGBA" and rgba.size == (52 * 4, 40 * 4)
    assert np.array_equal(np.asarray(rgba)[..., :3], np.asarray(opened("baboon crop, 1_x4.png")))
    a = np.asarray(rgba)[..., 3].astype(int)
    assert np.all(np.diff(a[:, 4:-4], axis=1) >= 0) and a[0, 0] <= 2 and a[0, -1] >= 253  # bicubic ramp kept
    sixteen = opened("sixteen_x4.png")
    assert sixteen.mode.startswith("I") and np.asarray(sixteen).max() > 255
    as8 = np.asarray(opened("bridge_x4.png")).astype(int)
    assert np.abs(np.rint(np.asarray(sixteen) / 257) - as8).max() <= 1  # same picture, 16-bit rounding
    assert opened("palette_x4.png").mode == "RGB"  # GIF -> PNG, palette expanded
    assert opened("rotated_x4.jpg").size == (40 * 4, 52 * 4)  # EXIF orientation applied
    assert not list(out.glob(".*")), "temporary files left behind"

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    proc = run_upscale(*args, "skip_existing=true", cwd=tmp_path)
    summary = json.loads((tmp_path / "run" / "upscale.json").read_text())
    assert summary["counts"] == {"skipped": 6, "failed": 2}
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.shared
@pytest.mark.parametrize(("weights", "tile", "budget_db"), [("efdn_x4_official.pth", 64, 0.01)])
def test_tiled_psnr_within_budget_of_whole_image(official_weights_dir, benchmark_dir, weights, tile, budget_db):
    """EFDN's operations are local: tiled inference (default overlap) stays within 0.01 dB of the whole image
    (first 5 Set14 images here, for time; benchmarks/upscale_quality.py measures all of Set5 and Set14)."""
    model = load_model(official_weights_dir / weights)
    whole = set_psnr(model, benchmark_dir, "Set14", 4, limit=5)
    tiled = set_psnr(model, benchmark_dir, "Set14", 4, limit=5, tile=tile)
    assert abs(tiled - whole) < budget_db
    assert tiled != whole  # the tiles were really cut (Set14 images are larger than one tile)


def test_self_ensemble_inverts_every_transform():
    """For a network that commutes with flips and transposes (nearest upsampling), the ensemble is the plain output;
    for one that does not, it is the mean of the eight back-transformed outputs."""
    x = torch.rand(1, 3, 5, 7)

    def nearest(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, scale_factor=2, mode="nearest")

    # eight equal terms summed in float32 then divided by 8: at most 7 roundings of a value <= 8|x| (gamma_7 bound)
    torch.testing.assert_close(self_ensemble(nearest, x), nearest(x), rtol=8 * torch.finfo(torch.float32).eps, atol=0)
    shifted = self_ensemble(lambda t: nearest(t) + torch.arange(t.shape[-1] * 2.0), x)
    assert not torch.equal(shifted, nearest(x))
    assert shifted.shape == (1, 3, 10, 14)


def test_small_inputs_are_padded_and_cropped_back():
    """EFDN needs 15 px; a 10x12 input is edge-padded, run and cropped."""
    from sr_lightning.archs.efdn import EFDN

    net = EFDN(scale=2, conv3x3=None).eval()
    small = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    out = upscale_image(net, small)
    assert out.shape == (20, 24, 3) and out.dtype == np.uint8
    padded = F.pad(to_float(small).permute(2, 0, 1)[None], (0, 3, 0, 5), mode="replicate")
    with torch.no_grad():
        ref = net(padded)[..., :20, :24].clamp(0, 1)
    assert np.array_equal(out, to_uint8(ref[0]).permute(1, 2, 0).numpy())


def test_out_of_memory_halves_the_tile_and_retries(caplog):
    calls = []

    def net(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[-1])
        if x.shape[-1] > 40:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return F.interpolate(x, scale_factor=2, mode="nearest")

    x = torch.rand(1, 3, 100, 100)
    out = run_tiled(net, x, 2, 160, 4, 16)
    # every output pixel is sum_i(w_i * v) / sum_i(w_i) over at most 4 overlapping tiles of the same value v: at most
    # 4 products, 2 x 3 additions and 1 division, each within one rounding of |v| (gamma_11 < 6 eps, relative)
    expected = F.interpolate(x, scale_factor=2, mode="nearest")
    torch.testing.assert_close(out, expected, rtol=6 * torch.finfo(torch.float32).eps, atol=0)
    assert calls[:3] == [100, 80, 40] and "retrying with tile 40" in caplog.text
    with pytest.raises(RuntimeError, match="not memory"):
        run_tiled(lambda t: (_ for _ in ()).throw(RuntimeError("not memory")), x, 2, 64, 4, 16)


def test_auto_tile_follows_the_budget():
    from sr_lightning.archs.efdn import EFDN
    from sr_lightning.inference.runner import Runner

    runner = Runner(EFDN(scale=4, conv3x3=None), device="cpu")
    big, small = resolve_tile(runner, "auto", 2048), resolve_tile(runner, "auto", 64)
    assert big % 16 == 0 and small % 16 == 0 and 32 <= small < big
    with pytest.raises(ValueError, match="smaller than the network's minimum"):
        resolve_tile(runner, 8)
