"""`python -m sr_lightning.benchmark`: many checkpoints x sets, Table-4 layout, per-image scores, cost columns, plot.

One end-to-end run (module fixture) of three official checkpoints (EFDN x2 and x4: one column, two scales; FDIWN
x4) on Set5, a folder of our own in the EDSR layout, and a missing set, with ensemble rows and the NTIRE metric;
the tests read its outputs. Scores are checked against the official numbers of `shared/weights/official`.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sr_lightning.evaluation.entries import Variant, resolve_methods, resolve_sets, variants
from sr_lightning.metrics import psnr_rgb_ntire
from sr_lightning.ops.imresize import bicubic_upscale
from sr_lightning.ops.pixels import to_float

# Official-code Y-PSNR / SSIM (shared/weights/official/README.md), whole-image inference.
REFERENCE = {("EFDN", 2): (37.9400, 0.9602), ("EFDN", 4): (32.0797, 0.8931), ("FDIWN", 4): (32.2168, 0.8954)}
CUSTOM = ("comic", "zebra")  # crops of two Set14 HR images in a folder of our own (HR only: the LR is generated)


def run_benchmark(*overrides: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "sr_lightning.benchmark", *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check:
        assert proc.returncode == 0, f"benchmark failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def custom_set(tmp_path_factory, benchmark_dir) -> Path:
    root = tmp_path_factory.mktemp("sets") / "MyPhotos"
    (root / "HR").mkdir(parents=True)
    for name in CUSTOM:
        with Image.open(benchmark_dir / "Set14" / "HR" / f"{name}.png") as im:
            im.crop((40, 40, 160, 136)).save(root / "HR" / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def bench(tmp_path_factory, official_weights_dir, benchmark_dir, custom_set) -> Path:
    """The run directory of one benchmark of the official EFDN x2/x4 and FDIWN x4 checkpoints."""
    run_dir = tmp_path_factory.mktemp("bench")
    weights = [official_weights_dir / f for f in ("efdn_x4_official.pth", "efdn_x2_official.pth")]
    weights.append(official_weights_dir / "fdiwn_x4_official.pt")
    run_benchmark(
        f"weights=[{','.join(str(w) for w in weights)}]",
        f"test_sets=[Set5,{custom_set},Urban100]",
        f"paths.benchmark_dir={benchmark_dir}",
        "ensemble=true",
        "ntire_psnr=true",
        "logger=wandb",
        "logger.wandb.offline=true",
        f"hydra.run.dir={run_dir}",
        cwd=run_dir,
    )
    return run_dir


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_table4_layout_and_reference_scores(bench):
    lines = (bench / "table4.md").read_text().splitlines()[2:]  # after the "### Y-PSNR / SSIM" title
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    # bicubic first, then one column per method (EFDN x2 and x4 share one), headed with params/MACs at x4
    assert header[:3] == ["Dataset", "Scale", "Bicubic"]
    # deploy-form params, named as such: FDIWN's weight-norm gains folded away (663,848 as trained, 657,080 deployed)
    assert header[3:] == [
        "EFDN, deploy form: 276.2K params, 14.7G MACs",
        "EFDN (x8 ensemble), deploy form: 276.2K params, 117.4G MACs",
        "FDIWN, deploy form: 657.1K params, 71.2G MACs",
        "FDIWN (x8 ensemble), deploy form: 657.1K params, 569.7G MACs",
    ]
    marked = {(c[0], c[1]): c[2:] for c in ([x.strip() for x in line.strip("|").split("|")] for line in lines[2:6])}
    # best / second best marked among the methods (tests/test_paper_tables.py checks the marks themselves)
    assert any("**" in c for c in marked[("Set5", "x4")]) and any("<u>" in c for c in marked[("Set5", "x4")])
    body = {k: [re.sub(r"\*\*|</?u>", "", c) for c in v] for k, v in marked.items()}
    assert body[("Set5", "x2")][0] == "33.67/0.9303" and body[("Set5", "x4")][0] == "28.43/0.8111"
    assert body[("Set5", "x2")][1] == "37.94/0.9602" and body[("Set5", "x2")][3:] == ["–", "–"]  # no FDIWN x2
    assert body[("Set5", "x4")][1] == "32.08/0.8931" and body[("Set5", "x4")][3] == "32.22/0.8954"
    assert ("MyPhotos", "x4") in body and "Missing (not evaluated): Urban100." in (bench / "table4.md").read_text()
    assert "RGB PSNR (dB), NTIRE" in (bench / "table4.md").read_text()  # the second block, labelled

    rows = {(r["method"], int(r["scale"])): r for r in _rows(bench / "table.csv")}
    for (network, scale), (psnr, ssim) in REFERENCE.items():
        row = rows[(network, scale)]
        assert float(row["Set5_psnr"]) == pytest.approx(psnr, abs=5e-5)
        assert float(row["Set5_ssim"]) == pytest.approx(ssim, abs=5e-5)
        assert int(row["Set5_images"]) == 5 and int(row["MyPhotos_images"]) == 2
    ensemble = rows[("EFDN (x8 ensemble)", 4)]
    assert ensemble["ensemble"] == "True" and float(ensemble["Set5_psnr"]) > float(rows[("EFDN", 4)]["Set5_psnr"])
    assert int(rows[("EFDN", 4)]["params_deploy"]) == 276_192


def test_per_image_scores_average_to_the_table(bench):
    images = _rows(bench / "per_image.csv")
    table = {(r["method"], int(r["scale"])): r for r in _rows(bench / "table.csv")}
    assert len(images) == len(table) * (5 + len(CUSTOM))
    for (method, scale), row in table.items():
        mine = [r for r in images if r["method"] == method and int(r["scale"]) == scale]
        for set_name in ("Set5", "MyPhotos"):
            scores = [float(r["psnr"]) for r in mine if r["set"] == set_name]
            assert np.mean(scores) == pytest.approx(float(row[f"{set_name}_psnr"]), abs=1e-9)
            rgb = [float(r["psnr_rgb"]) for r in mine if r["set"] == set_name]
            assert np.mean(rgb) == pytest.approx(float(row[f"{set_name}_psnr_rgb"]), abs=1e-9)
        assert sorted(r["image"] for r in mine if r["set"] == "MyPhotos") == sorted(CUSTOM)


def test_json_plot_and_wandb_table(bench):
    report = json.loads((bench / "table.json").read_text())
    assert report["missing_sets"] == ["Urban100"] and report["sets"] == ["Set5", "MyPhotos"]
    assert report["wall_seconds"] > 0 and "psnr_rgb" in report["conventions"]
    assert {c["scale"] for c in report["complexity"] if c["label"] == "EFDN"} == {2, 4}
    with Image.open(bench / "psnr_vs_macs.png") as im:  # a real PNG, not an empty file
        assert im.format == "PNG" and im.size[0] > 300
    run = next((bench / "wandb").glob("offline-run-*"))
    tables = list(run.rglob("*.table.json"))
    assert {p.name.split("_")[0] for p in tables} >= {"table", "per"}, tables
    logged = json.loads(next(p for p in tables if p.name.startswith("table")).read_text())
    assert "Set5_psnr" in logged["columns"] and len(logged["data"]) == 6


def test_nothing_found_is_an_error(official_weights_dir, benchmark_dir, tmp_path):
    proc = run_benchmark(
        f"weights=[{official_weights_dir / 'efdn_x4_official.pth'}]",
        "test_sets=[Urban100,Manga109]",
        f"paths.benchmark_dir={benchmark_dir}",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert "none of test_sets=['Urban100', 'Manga109'] was found" in proc.stderr
    assert not (tmp_path / "table.json").exists()


def test_ddp_scores_each_image_once(official_weights_dir, benchmark_dir, tmp_path):
    run_benchmark(
        f"weights=[{official_weights_dir / 'efdn_x4_official.pth'}]",
        "test_sets=[Set5]",
        f"paths.benchmark_dir={benchmark_dir}",
        "hardware=ddp_cpu",
        "complexity.enabled=false",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
    )
    images = _rows(tmp_path / "per_image.csv")
    assert sorted(r["image"] for r in images) == ["baby", "bird", "butterfly", "head", "woman"]
    row = _rows(tmp_path / "table.csv")[0]
    assert float(row["Set5_psnr"]) == pytest.approx(REFERENCE[("EFDN", 4)][0], abs=5e-5)


def test_methods_and_sets_resolution(official_weights_dir, benchmark_dir, tmp_path):
    twin = tmp_path / "my_efdn.pth"
    shutil.copy(official_weights_dir / "efdn_x4_official.pth", twin)
    methods = resolve_methods([str(official_weights_dir / "efdn_x4_official.pth"), str(twin)], None, [Variant()])
    assert [m.column for m in methods] == ["EFDN [efdn_x4_official]", "EFDN [my_efdn]"]  # same cell: file names
    labelled = resolve_methods([str(twin)], ["Ours"], variants(chop=True, ensemble=True))
    assert [m.column for m in labelled] == ["Ours", "Ours (chop)", "Ours (x8 ensemble)", "Ours (x8 ensemble, chop)"]
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_methods([str(tmp_path / "nope.pth")], None, [Variant()])
    with pytest.raises(ValueError, match="plain=false"):
        variants(plain=False)
    found, missing = resolve_sets(["Set14", str(tmp_path), "B100"], benchmark_dir)
    assert [s.name for s in found] == ["Set14"] and missing == [str(tmp_path), "B100"]


def test_ntire_rgb_psnr_matches_the_challenge_script(benchmark_dir):
    """Against a numpy transcription of the NTIRE ESR scoring (tensor2uint + calculate_psnr with border 4)."""
    hr8 = np.asarray(Image.open(benchmark_dir / "Set5" / "HR" / "butterfly.png").convert("RGB"))
    lr8 = np.asarray(Image.open(benchmark_dir / "Set5" / "LR_bicubic" / "X4" / "butterflyx4.png").convert("RGB"))
    hr = to_float(hr8.transpose(2, 0, 1))[None]
    sr = bicubic_upscale(to_float(lr8.transpose(2, 0, 1))[None], 4)
    sr = sr + 0.003 * torch.sin(torch.arange(sr.numel()).reshape(sr.shape).float())  # off the uint8 grid
    ours = float(psnr_rgb_ntire(sr, hr[..., : sr.shape[-2], : sr.shape[-1]])[0])

    img = np.uint8((sr[0].clamp(0, 1).numpy().transpose(1, 2, 0) * 255.0).round())
    ref = hr8[: img.shape[0], : img.shape[1]]
    b = 4
    diff = img[b:-b, b:-b].astype(np.float64) - ref[b:-b, b:-b].astype(np.float64)
    expected = 20 * np.log10(255.0 / np.sqrt(np.mean(diff**2)))
    assert ours == pytest.approx(expected, abs=1e-10)
