"""W&B dashboards (`logger=wandb`, offline): what the runs write, read back from the offline run files.

One training job pre-empted with SIGTERM and resumed with ``resume=auto`` (two offline runs of one W&B run), and one
two-job multirun, of a tiny EFDN on the embedded sample photographs; the tests read their ``wandb/offline-run-*``
folders (`_wandb_run`). The crop selection and the panel layout are also checked in-process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _wandb_run import OfflineRun, describe, offline_runs
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image
from test_resume_exact import kill_after_first_checkpoint  # waits for the first last.ckpt, then signals

from sr_lightning.data.sample import SampleImages
from sr_lightning.lightning.callbacks.wandb_panels import (
    MAP_ROWS,
    edge_energy,
    edge_panel,
    edge_rich_window,
    select_crops,
)
from sr_lightning.losses.eg import EDGE_TERMS
from sr_lightning.ops.pixels import to_uint8
from sr_lightning.utils.wandb_logging import MAX_GROUP_LENGTH, log_rows, log_summary, sweep_group

STEPS = 6
CROP = 96  # callbacks.wandb_panels.crop_size (default)
TINY = (
    "model.channels=8",
    "model.num_blocks=3",
    "model.esa_channels=4",
    "scale=2",
    "loss=eg",  # a loss with terms: train/l1, train/sobel_x, ...
    "stage.batch_size=2",
    "stage.lr_patch_size=16",
    "data.num_workers=0",
    "trainer.log_every_n_steps=1",
    "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
    "test_sets=[]",  # the test loop scores the 3 held-out sample photographs only
    "logger=wandb",
    "logger.wandb.offline=true",
)


def wandb_env(tmp: Path) -> dict[str, str]:
    """Offline, quiet, and W&B's own folders (artifact staging, cache, settings) under `tmp`, not in $HOME."""
    dirs = {k: str(tmp / k.lower()) for k in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR")}
    return {**os.environ, **dirs, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}


def train_cmd(*overrides: str, multirun: bool = False) -> list[str]:
    return [sys.executable, "-m", "sr_lightning.train", *(["--multirun"] if multirun else []), *TINY, *overrides]


def check(proc: subprocess.CompletedProcess | subprocess.Popen, code: int, stderr: str) -> None:
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}:\n{stderr[-5000:]}"


# -- one pre-empted and resumed training job --------------------------------------------------------------------


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> Path:
    """Steps 1-3 (SIGTERM after the step-2 checkpoint: last.ckpt at step 3, exit 143), then `resume=auto` to step 6,
    test loop and weights artifact; returns the run directory."""
    tmp = tmp_path_factory.mktemp("wandb")
    run_dir, env = tmp / "run", wandb_env(tmp)
    common = (
        f"trainer.max_steps={STEPS}",
        "stage.val_every_n_steps=2",
        "callbacks.last_checkpoint.every_n_train_steps=2",
        "logger.wandb_artifacts.weights=true",
        f"hydra.run.dir={run_dir}",
    )
    proc = subprocess.Popen(train_cmd(*common), cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_after_first_checkpoint(proc, run_dir, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    check(proc, 143, err.decode())
    done = subprocess.run(train_cmd(*common, "resume=auto"), cwd=tmp, env=env, capture_output=True, text=True)
    check(done, 0, done.stderr)
    return run_dir


@pytest.fixture(scope="module")
def runs(resumed) -> list[OfflineRun]:
    found = offline_runs(resumed)
    for run in found:
        print(describe(run))
    return found


@pytest.mark.slow
def test_resumed_job_continues_the_same_wandb_run(resumed, runs):
    assert len(runs) == 2, [r.folder.name for r in runs]
    first, second = runs
    killed_at = min(row["trainer/global_step"] for row in second.rows_with("train/loss"))
    assert first.run_id == second.run_id == torch.load(resumed / "checkpoints" / "last.ckpt")["sr_wandb_id"]
    assert all(r.folder.name.endswith(f"-{first.run_id}") for r in runs)
    assert first.exit_code == 143 and second.exit_code == 0  # pre-empted, then finished
    # the second part starts where the checkpoint left off and reaches the last step
    assert 2 <= killed_at < STEPS
    assert max(row["trainer/global_step"] for row in first.rows_with("train/loss")) == killed_at - 1
    assert max(row["trainer/global_step"] for row in second.rows_with("train/loss")) == STEPS - 1
    assert first.run.run_group == second.run.run_group == "efdn"  # a single run: grouped by network


@pytest.mark.slow
def test_config_losses_lr_and_validation_metrics(runs):
    for run in runs:
        assert run.config["model"]["channels"] == 8 and run.config["loss"]["_target_"].endswith("EdgeGradientLoss")
        assert run.config["logger"]["wandb_artifacts"]["weights"] is True
        keys = run.history_keys()
        assert {"train/loss", "train/l1", *(f"train/{t}" for t in EDGE_TERMS)} <= keys
        assert {"lr-Adam", "val/psnr", "val/ssim"} <= keys
        for row in run.rows_with("train/loss"):  # EG loss: L1 + sum of the lambda-weighted edge terms (1e-3 each)
            edges = sum(row[f"train/{t}"] for t in EDGE_TERMS)
            assert row["train/loss"] == pytest.approx(row["train/l1"] + 1e-3 * edges, rel=1e-5)


@pytest.mark.slow
def test_sizes_are_summary_values(resumed, runs):
    sizes = json.loads((resumed / "summary.json").read_text())
    expected = {f"model/{k}": sizes[k] for k in ("num_params", "num_params_train", "macs_720p")}
    for run in runs:
        assert any(update == expected for update in run.summary_updates)  # set explicitly, not only as history
        assert run.config["num_params"] == sizes["num_params"]


def panel_tiles(run: OfflineRun, row: dict) -> list[np.ndarray]:
    return [np.asarray(Image.open(run.folder / "files" / name)) for name in row["val/panels/filenames"]]


@pytest.mark.slow
def test_panels_show_the_same_crops_at_every_validation(runs):
    crops = select_crops(SampleImages("heldout", scale=2), 4, CROP)
    assert len(crops) == 3  # num_crops=4 of 3 held-out photographs
    rows = [(run, row) for run in runs for row in run.rows_with("val/panels/filenames")]
    assert [row["trainer/global_step"] for _, row in rows] == [2, 4, 6]  # every validation, across both runs
    first = panel_tiles(*rows[0])
    for run, row in rows:
        captions = row["val/panels/captions"]
        assert [c.split(" HR ")[0] for c in captions] == [c.name for c in crops]
        assert all(f"at y={c.top}, x={c.left}:" in cap for c, cap in zip(crops, captions, strict=True))
        for tile, ref, crop in zip(panel_tiles(run, row), first, crops, strict=True):
            h, w = crop.hr.shape[-2:]
            assert tile.shape == (h * (1 + len(MAP_ROWS)), 3 * w, 3)
            # bicubic and HR columns (images and edge maps) are identical at every validation; the HR image is the crop
            assert np.array_equal(tile[:, :w], ref[:, :w]) and np.array_equal(tile[:, 2 * w :], ref[:, 2 * w :])
            assert np.array_equal(tile[:h, 2 * w :], to_uint8(crop.hr).permute(1, 2, 0).numpy())
    last = panel_tiles(*rows[-1])
    assert any(not np.array_equal(a[:, CROP : 2 * CROP], b[:, CROP : 2 * CROP]) for a, b in zip(first, last))  # SR


@pytest.mark.slow
def test_test_loop_tables_match_benchmark_json(resumed, runs):
    run = runs[1]
    (row,) = run.rows_with("test/table/path")
    table = json.loads((run.folder / "files" / row["test/table/path"]).read_text())
    got = [dict(zip(table["columns"], values, strict=True)) for values in table["data"]]
    sets = json.loads((resumed / "benchmark.json").read_text())["sets"]
    assert [(r["network"], r["scale"], r["set"]) for r in got] == [("EFDN", 2, "sample")]
    for key in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "images"):
        assert got[0][key] == sets["sample"][key]
    (row,) = run.rows_with("test/per_image/path")
    per_image = json.loads((run.folder / "files" / row["test/per_image/path"]).read_text())
    images = [dict(zip(per_image["columns"], values, strict=True)) for values in per_image["data"]]
    assert sorted(r["image"] for r in images) == ["camera", "chelsea", "coins"]
    assert np.mean([r["psnr"] for r in images]) == pytest.approx(sets["sample"]["psnr"], abs=1e-9)


@pytest.mark.slow
def test_weights_artifact(resumed, runs):
    assert not [a for a in runs[0].artifacts if a.type == "model"]  # pre-empted: no weights yet
    (artifact,) = [a for a in runs[1].artifacts if a.type == "model"]
    assert artifact.name == f"weights-{runs[1].run_id}" and set(artifact.aliases) == {"latest", "best"}
    files = {entry.path: entry for entry in artifact.manifest.contents}
    assert set(files) == {"model.pth", "deploy.pth"}
    for name, entry in files.items():
        data = (resumed / "weights" / name).read_bytes()
        assert entry.size == len(data) and entry.digest == base64.b64encode(hashlib.md5(data).digest()).decode()


# -- a multirun ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_multirun_jobs_share_a_group_and_have_their_own_runs(tmp_path):
    sweep = tmp_path / "logs" / "sweeps" / "lr"
    overrides = (
        "stage.optimizer.lr=1.0e-3,2.0e-3",
        "trainer.max_steps=1",
        "stage.val_every_n_steps=1",
        "test=false",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"hydra.sweep.dir={sweep}",
    )
    cmd = train_cmd(*overrides, multirun=True)
    proc = subprocess.run(cmd, cwd=tmp_path, env=wandb_env(tmp_path), capture_output=True, text=True)
    check(proc, 0, proc.stderr)
    jobs = [offline_runs(sweep / str(n)) for n in (0, 1)]
    assert [len(j) for j in jobs] == [1, 1]
    (a,), (b,) = jobs
    print(describe(a))
    assert a.run.run_group == b.run.run_group == "sweeps/lr"
    assert a.run_id != b.run_id  # the first job's run was finished: the second did not log into it
    assert [run.rows_with("lr-Adam")[0]["lr-Adam"] for run in (a, b)] == [1.0e-3, 2.0e-3]


# -- in-process: crop selection, panel layout, group names ------------------------------------------------------


def test_edge_energy_is_exact_and_the_window_finds_the_edges():
    hr = torch.zeros(3, 64, 80)
    hr[1, 40:52, 50:62] = 1.0  # a green square: edges in one channel, 255 high in 8 bits
    energy = edge_energy(hr)
    # Sobel-x across the left side, away from the corners: |1*255 + 2*255 + 1*255| = 1020, Sobel-y there 0
    assert energy[45, 49].item() == 1020 and energy[45, 50].item() == 1020 and energy[45, 55].item() == 0
    assert torch.equal(energy, energy.round())  # whole numbers
    top, left, h, w = edge_rich_window(hr, 16, 2)
    assert (h, w) == (16, 16) and top % 2 == 0 and left % 2 == 0
    brute = {(t, x): energy[t : t + h, x : x + w].sum().item() for t in range(0, 49, 2) for x in range(0, 65, 2)}
    best = max(brute.values())
    assert brute[(top, left)] == best and (top, left) == min(k for k, v in brute.items() if v == best)  # first one
    # an image smaller than the window: the whole image, sides rounded down to the scale
    assert edge_rich_window(torch.rand(3, 21, 30), 96, 4) == (0, 0, 20, 28)


def test_crops_are_fixed_and_match_the_dataset():
    data = SampleImages("heldout", scale=2)
    a, b = select_crops(data, 2, 48), select_crops(data, 2, 48)
    assert [(c.name, c.top, c.left) for c in a] == [(c.name, c.top, c.left) for c in b]
    for crop in a:
        item = next(data[i] for i in range(len(data)) if data[i]["name"] == crop.name)
        t, x = crop.top, crop.left
        assert crop.hr.shape[-2:] == (48, 48) and crop.lr.shape[-2:] == (24, 24)
        assert torch.equal(crop.hr, item["hr"][:, t : t + 48, x : x + 48])
        assert torch.equal(crop.lr, item["lr"][:, t // 2 : t // 2 + 24, x // 2 : x // 2 + 24])


def test_edge_panel_layout():
    torch.manual_seed(0)
    hr = torch.rand(3, 24, 32)
    bicubic = hr.roll(1, dims=-1)
    panel = edge_panel(bicubic, hr, hr)
    assert panel.shape == (3, 24 * 4, 32 * 3)
    assert torch.equal(panel[:, :24, :32], bicubic) and torch.equal(panel[:, :24, 64:], hr)
    assert torch.equal(panel[:, :, 32:64], panel[:, :, 64:])  # SR = HR: identical columns, maps included
    maps = panel[:, 24:]
    assert maps.min() >= 0 and maps.max() == 1 and torch.equal(maps[0], maps[1])  # gray maps in [0, 1], clipped
    assert not torch.equal(panel[:, 24:, :32], panel[:, 24:, 64:])  # the bicubic maps differ from the HR maps


def test_sweep_group_names():
    sweep = "train/multiruns/2026-01-31_12-00-00"
    assert sweep_group(f"/x/logs/{sweep}", "/x/logs") == sweep
    assert sweep_group("/elsewhere/sweep", "/x/logs") == "/elsewhere/sweep"
    assert sweep_group("/" + "d" * 300) == "d" * MAX_GROUP_LENGTH


def test_summary_and_tables_only_on_rank_zero(tmp_path, monkeypatch):
    """Under DDP every rank calls them; a rank > 0 holds a dummy experiment (no `summary`) and must start no run."""
    logger = WandbLogger(save_dir=tmp_path, offline=True)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    log_summary([logger], {"model/num_params": 1})
    log_rows([logger], "test/table", [{"set": "sample", "psnr": 30.0}])
    assert logger._experiment is None and not (tmp_path / "wandb").exists()
