"""The real Hydra entry points, run as users type them (subprocesses), on real data."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _tolerance import REFERENCE_TOLERANCE

from sr_lightning.archs.efdn import EFDN
from sr_lightning.profiling import count_macs

pytestmark = pytest.mark.slow

# Reference numbers of the official code (../shared/weights/official/README.md).
REFERENCE = {
    ("efdn", 2): {"Set5": (37.9400, 0.9602), "Set14": (33.4361, 0.9165)},
    ("efdn", 4): {"Set5": (32.0797, 0.8931), "Set14": (28.5870, 0.7809)},
    ("fdiwn", 2): {"Set5": (38.0583, 0.9607), "Set14": (33.7124, 0.9195)},
    ("fdiwn-chop", 2): {"Set5": (38.0666, 0.9608), "Set14": (33.7562, 0.9201)},
    ("fdiwn", 3): {"Set5": (34.5120, 0.9280), "Set14": (30.3791, 0.8427)},
    ("fdiwn-chop", 3): {"Set5": (34.5195, 0.9281), "Set14": (30.4206, 0.8438)},
    ("fdiwn", 4): {"Set5": (32.2168, 0.8954), "Set14": (28.6398, 0.7826)},
    ("fdiwn-chop", 4): {"Set5": (32.2267, 0.8955), "Set14": (28.6606, 0.7829)},
}
PARAMS = {
    ("efdn", 2): 260_604,
    ("efdn", 4): 276_192,
    ("fdiwn", 2): 629_176,
    ("fdiwn", 3): 646_486,
    ("fdiwn", 4): 663_848,
}

# A training run of two steps on the embedded sample data, no test loop.
TINY_TRAIN = (
    "trainer.max_steps=2",
    "stage.val_every_n_steps=2",
    "stage.batch_size=2",
    "stage.lr_patch_size=16",
    "data.num_workers=0",
    "test=false",
)


def run(module: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"{module} {overrides} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.mark.parametrize(
    ("model", "scale", "chop"),
    [("efdn", 2, False), ("efdn", 4, False)] + [("fdiwn", s, c) for s in (2, 3, 4) for c in (False, True)],
)
def test_official_checkpoints_reproduce_reference(model, scale, chop, official_weights_dir, benchmark_dir, tmp_path):
    weights = official_weights_dir / (
        f"efdn_x{scale}_official.pth" if model == "efdn" else f"fdiwn_x{scale}_official.pt"
    )
    proc = run(
        "sr_lightning.test",
        f"model={model}",
        f"scale={scale}",
        f"weights={weights}",
        f"chop={str(chop).lower()}",
        "test_sets=[Set5,Set14]",
        f"paths.benchmark_dir={benchmark_dir}",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
    )
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["num_params"] == PARAMS[(model, scale)] and report["chop"] is chop
    # The evaluated network's counts beside it; the official files hold EFDN's deploy form, FDIWN's training form
    complexity = json.loads((tmp_path / "complexity.json").read_text())
    assert complexity["params_deploy" if model == "efdn" else "params_train"] == PARAMS[(model, scale)]
    assert (complexity["scale"], complexity["form"], complexity["runtime_ms_mean"]) == (scale, "deploy", None)
    for name, (psnr, ssim) in REFERENCE[(f"{model}-chop" if chop else model, scale)].items():
        row = report["sets"][name]
        assert row["lr_source"] == "official"
        assert row["images"] == {"Set5": 5, "Set14": 14}[name]
        # to 4 decimals (REFERENCE_TOLERANCE: a last digit may differ by one at a rounding boundary) through the
        # default inference path, which `sr_lightning.test` scores: folds + channels_last (archs/optimize.py)
        assert abs(row["psnr"] - psnr) <= REFERENCE_TOLERANCE, (name, row)
        assert abs(row["ssim"] - ssim) <= REFERENCE_TOLERANCE, (name, row)
        assert row["psnr"] > row["bicubic_psnr"] + 2.0
        assert f"| {name} | x{scale} |" in proc.stdout  # the printed table


def test_train_then_test_through_entry_points(benchmark_dir, tmp_path):
    run_dir = tmp_path / "train"
    run(
        "sr_lightning.train",
        "model=efdn",
        "scale=2",
        "trainer.max_steps=6",
        "trainer.log_every_n_steps=1",
        "stage.val_every_n_steps=3",
        "stage.batch_size=2",
        "stage.lr_patch_size=24",
        "data.num_workers=0",
        "test_sets=[Set5]",
        f"paths.benchmark_dir={benchmark_dir}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    report = json.loads((run_dir / "benchmark.json").read_text())
    assert set(report["sets"]) == {"sample", "Set5"} and report["scale"] == 2
    complexity, summary = (json.loads((run_dir / name).read_text()) for name in ("complexity.json", "summary.json"))
    assert complexity["params_deploy"] == summary["num_params"] == PARAMS[("efdn", 2)]
    assert complexity["params_train"] == summary["num_params_train"] and complexity["macs_720p"] == summary["macs_720p"]
    assert report["sets"]["Set5"]["images"] == 5
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(n.startswith("best-") for n in ckpts)
    metrics = (run_dir / "csv").rglob("metrics.csv")
    header = next(metrics).read_text().splitlines()[0]
    assert "train/loss" in header and "val/psnr" in header
    assert list((run_dir / "samples").glob("*.png")), "validation samples were not saved"

    # The exported weights file and the Lightning checkpoint both load in the test entry point.
    best = next(p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("best-"))
    for weights in (run_dir / "weights" / "model.pth", best):
        out = tmp_path / f"test_{weights.stem}"
        run(
            "sr_lightning.test",
            "model=efdn",
            "scale=2",
            f"weights={weights}",
            "test_sets=[Set5]",
            f"paths.benchmark_dir={benchmark_dir}",
            f"hydra.run.dir={out}",
            cwd=tmp_path,
        )
        row = json.loads((out / "benchmark.json").read_text())["sets"]["Set5"]
        assert row["psnr"] == pytest.approx(report["sets"]["Set5"]["psnr"], abs=1e-6)


def test_wrong_scale_weights_fail_clearly(official_weights_dir, tmp_path):
    env = {**os.environ}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sr_lightning.test",
            "model=efdn",
            "scale=3",
            f"weights={official_weights_dir / 'efdn_x4_official.pth'}",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "does not fit EFDN" in proc.stderr


def test_wandb_offline_logger(tmp_path):
    run_dir = tmp_path / "run"
    run(
        "sr_lightning.train",
        "logger=wandb",
        "logger.wandb.offline=true",
        *TINY_TRAIN,
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb")), "no offline W&B run was written"
    assert torch.load(run_dir / "weights" / "model.pth", weights_only=True)["format"] == "sr_lightning"


def test_ddp_test_loop_scores_every_image_once(official_weights_dir, benchmark_dir, tmp_path):
    """Two CPU processes (gloo): each image scored exactly once, results synchronised, rank 0 reports."""
    run(
        "sr_lightning.test",
        "model=efdn",
        "scale=4",
        f"weights={official_weights_dir / 'efdn_x4_official.pth'}",
        "hardware=ddp_cpu",
        "test_sets=[Set5,Set14]",
        f"paths.benchmark_dir={benchmark_dir}",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
    )
    sets = json.loads((tmp_path / "benchmark.json").read_text())["sets"]
    assert sets["Set5"]["images"] == 5 and sets["Set14"]["images"] == 14
    for name, (psnr, ssim) in REFERENCE[("efdn", 4)].items():
        assert abs(sets[name]["psnr"] - psnr) < 0.01 and abs(sets[name]["ssim"] - ssim) < 5e-4


def test_multirun_sweep(tmp_path):
    """A Hydra multirun through the real entry point (the hparams_search option with a tiny budget)."""
    sweep = tmp_path / "sweep"
    run(
        "sr_lightning.train",
        "hparams_search=efdn_lr",
        "stage.optimizer.lr=1e-3,2e-3",
        *TINY_TRAIN,
        "logger=csv",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in runs] == ["0", "1"]
    lrs = set()
    for r in runs:
        assert (r / "weights" / "model.pth").is_file()
        lrs.add(float((r / ".hydra" / "overrides.yaml").read_text().split("stage.optimizer.lr=")[1].split()[0]))
    assert lrs == {1e-3, 2e-3}
    # The sweep's summary table: one row per run with its size, MACs and validation PSNR.
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["run"] for r in rows] == ["0", "1"]
    deploy_macs = count_macs(EFDN(scale=4), 4)  # MACs are counted on the folded (deploy) network
    for r in rows:
        assert int(r["num_params"]) == 276_192  # the deploy form, next to its MACs
        assert int(r["num_params_train"]) == 723_552  # default model: EFDN x4 training form, seven-branch EDBBs
        assert int(r["macs_720p"]) == deploy_macs and float(r["val_psnr"]) > 10
    assert "| rank | run | status | overrides | num_params |" in (sweep / "summary.md").read_text()


def test_fdiwn_blocks_sweep(tmp_path):
    """hparams_search=fdiwn_blocks on a 2x2 subset with a tiny budget: one summary table in the sweep directory."""
    sweep = tmp_path / "sweep"
    run(
        "sr_lightning.train",
        "hparams_search=fdiwn_blocks",
        "model.num_groups=1,2",
        "model.num_wdib=1,2",
        "scale=2",
        *TINY_TRAIN,
        "trainer.limit_val_batches=1",
        "logger=csv",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert len(rows) == 4
    by_cfg = {}
    for r in rows:
        groups = int(r["overrides"].split("model.num_groups=")[1].split()[0])
        wdib = int(r["overrides"].split("model.num_wdib=")[1].split()[0])
        by_cfg[(groups, wdib)] = (int(r["num_params"]), int(r["macs_720p"]), float(r["val_psnr"]))
    assert set(by_cfg) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert by_cfg[(1, 1)][0] < by_cfg[(1, 2)][0] < by_cfg[(2, 2)][0] and by_cfg[(1, 1)][0] < by_cfg[(2, 1)][0]
    assert by_cfg[(1, 1)][1] < by_cfg[(2, 2)][1]
    assert all(10 < v[2] < 60 for v in by_cfg.values())
    assert (sweep / "summary.md").read_text().count("\n") == 2 + 4


def test_two_process_training_as_users_type_it(tmp_path):
    """`python -m sr_lightning.train model=fdiwn scale=3 trainer.devices=2` (DDP over two CPU processes here)."""
    run_dir = tmp_path / "run"
    run(
        "sr_lightning.train",
        "model=fdiwn",
        "scale=3",
        "trainer.devices=2",
        *TINY_TRAIN,
        "trainer.limit_val_batches=1",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    # the paper's count is the weight-normalised training form; the deploy form bakes each (g, v) into one weight
    assert summary["num_params_train"] == 646_486 and summary["num_params"] == 640_402 and summary["steps"] == 2
    sd = torch.load(run_dir / "weights" / "model.pth", weights_only=True)["state_dict"]
    assert sd["up1.1.weight"].shape[0] == 3 * 3**2
