"""Sweeps and clusters as users type them: Optuna, multirun x DDP, a failing job, a grid of runs too short to
validate, submitit's local executor, the sbatch script of hydra/launcher=slurm (written, not submitted),
hardware=multinode under a SLURM environment."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from compose import compose_cfg
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment
from test_entry_points import TINY_TRAIN

pytestmark = pytest.mark.slow

# Tiny EFDN training runs on the embedded sample photos: 2 steps, one validation, no test loop.
TINY = (*TINY_TRAIN, "model.channels=8", "model.esa_channels=4")


def train(cwd: Path, *overrides: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    cmd = [sys.executable, "-m", "sr_lightning.train", *overrides]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def summary(sweep: Path) -> dict[str, dict[str, str]]:
    with (sweep / "summary.csv").open() as f:
        return {row["run"]: row for row in csv.DictReader(f)}


def lr_of(row: dict[str, str]) -> float:
    return float(next(o for o in row["overrides"].split() if o.startswith("stage.optimizer.lr=")).split("=")[1])


def test_optuna_search_runs_its_trials_and_summarises_them(tmp_path):
    sweep = tmp_path / "optuna"
    proc = train(tmp_path, "hparams_search=efdn_optuna", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}", *TINY)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = summary(sweep)
    assert sorted(rows) == ["0", "1"] and all(r["status"] == "completed" for r in rows.values())
    # each trial drew its own learning rate and EG factor inside the configured ranges, and trained with EG
    factors = [float(o.split("=")[1]) for r in rows.values() for o in r["overrides"].split() if "auto_factor" in o]
    assert len(factors) == 2 and all(3e-4 <= f <= 3e-2 for f in factors)
    assert len({lr_of(r) for r in rows.values()}) == 2 and all(1e-4 <= lr_of(r) <= 5e-3 for r in rows.values())
    assert yaml.safe_load((sweep / "0" / ".hydra" / "config.yaml").read_text())["loss"]["lambdas"] == "auto"
    # what the entry point returned (val/psnr_best) is what Optuna maximised
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(float(r["val_psnr"]) for r in rows.values()), abs=1e-4)


def test_multirun_with_ddp_runs_each_job_on_two_processes_in_its_own_directory(tmp_path):
    cwd, sweep = tmp_path / "cwd", tmp_path / "sweep"
    proc = train(cwd, "-m", "hardware=ddp_cpu", "stage.optimizer.lr=1e-3,2e-3", f"hydra.sweep.dir={sweep}", *TINY)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("Launching 2 jobs locally") == 1 and "#2 :" not in proc.stdout  # no relaunched sweep
    rows = summary(sweep)
    assert sorted(rows) == ["0", "1"] and [lr_of(rows[k]) for k in ("0", "1")] == [1e-3, 2e-3]
    for job in ("0", "1"):
        assert "global batch 2 = 2 process(es) x 1 per device" in (sweep / job / "train.log").read_text()
        assert (sweep / job / "train_ddp_rank1.log").is_file()  # rank 1 ran this job, in this job's directory
        assert (sweep / job / "weights" / "deploy.pth").is_file()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert not any(cwd.iterdir())  # no stray run folder (logs/train/runs/...) from the ranks


def test_a_failing_job_is_reported_and_the_others_finish(tmp_path):
    sweep = tmp_path / "sweep"
    proc = train(tmp_path, "-m", "stage.optimizer.lr=-1,1e-3", f"hydra.sweep.dir={sweep}", *TINY)
    assert proc.returncode != 0  # the sweep had a failure, and says so
    rows = summary(sweep)
    assert rows["0"]["status"] == "failed" and "Invalid learning rate: -1" in rows["0"]["error"]
    assert rows["1"]["status"] == "completed" and float(rows["1"]["val_psnr"]) > 0
    assert (sweep / "1" / "weights" / "deploy.pth").is_file()
    assert "- run 0 failed: ValueError: Invalid learning rate: -1" in (sweep / "summary.md").read_text()


def test_a_grid_sweep_of_runs_too_short_to_validate_finishes(tmp_path):
    """Only a sweeper that optimizes needs the validation metric: a grid sweep ends with 0 and prints its table."""
    sweep = tmp_path / "sweep"
    short = [o for o in TINY if not o.startswith("stage.val_every_n_steps=")] + ["stage.val_every_n_steps=100"]
    proc = train(tmp_path, "-m", "seed=1,2", f"hydra.sweep.dir={sweep}", *short)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = summary(sweep)
    assert sorted(rows) == ["0", "1"] and all(r["status"] == "completed" and r["val_psnr"] == "" for r in rows.values())
    table = (sweep / "summary.md").read_text()
    assert "Runs 0, 1: no validation ran" in table and "| no validation ran |" in table
    assert table in proc.stdout  # printed at the end, not just its path
    macs = float(rows["0"]["macs_720p"])
    assert f"| {int(rows['0']['num_params']):,} | {macs / 1e9:.2f} G |" in table  # the complexity reports' units


def test_submitit_local_launcher_runs_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    sweep_args = ("-m", "hydra/launcher=local", "stage.optimizer.lr=1e-3,2e-3", f"hydra.sweep.dir={sweep}")
    proc = train(tmp_path, *sweep_args, *TINY)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = summary(sweep)
    assert sorted(rows) == ["0", "1"] and all(r["status"] == "completed" for r in rows.values())
    assert all(float(r["val_psnr"]) > 0 and r["steps"] == "2" for r in rows.values())
    assert len(list(sweep.glob(".submitit/*/*_submitted.pkl"))) == 2  # each job went through submitit
    assert "sweep summary" in proc.stdout + proc.stderr and (sweep / "summary.md").is_file()


def test_slurm_launcher_writes_the_sbatch_script(tmp_path):
    """Through hydra-submitit-launcher up to `sbatch`, which is a stand-in that keeps the script and refuses."""
    bin_dir, script = tmp_path / "bin", tmp_path / "captured.sbatch"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {script}\necho "sbatch: dry run" >&2\nexit 1\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit only checks that srun exists
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    overrides = ["-m", "hydra/launcher=slurm", "hardware=multinode", "trainer.num_nodes=2", "trainer.devices=4"]
    overrides += ["hydra.launcher.partition=gpu", "hydra.launcher.account=proj", "resume=auto"]
    overrides += ["stage.optimizer.lr=1e-3,2e-3", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = train(tmp_path, *overrides, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert proc.returncode != 0 and "sbatch: dry run" in proc.stderr
    lines = script.read_text().splitlines()
    sbatch = {line.split()[1] for line in lines if line.startswith("#SBATCH")}
    expected = {"--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--cpus-per-task=8", "--mem=64GB"}
    expected |= {"--time=1440", "--partition=gpu", "--account=proj", "--signal=USR2@120", "--requeue"}
    expected |= {"--array=0-1%2", "--open-mode=append"}
    assert expected <= sbatch, sorted(sbatch)
    assert any(line.startswith("srun ") and "submitit.core._submit" in line for line in lines)


def test_multinode_hardware_takes_ranks_from_slurm_and_leaves_the_signal_to_preemption(tmp_path, monkeypatch):
    env = {"SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4", "SLURM_NNODES": "2", "SLURM_PROCID": "5"}
    env |= {"SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_NODELIST": "gpu[01-02]", "SLURM_JOB_ID": "77"}
    env |= {"SLURM_JOB_NAME": "train"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = compose_cfg("train", ["hardware=multinode", "trainer.accelerator=cpu", "trainer.precision=32"], tmp_path)
    trainer = instantiate(cfg.trainer, logger=False)
    environment = trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and not environment.auto_requeue
    assert (trainer.num_nodes, trainer.num_devices, trainer.world_size, trainer.global_rank) == (2, 4, 8, 5)
    assert trainer.local_rank == 1 and trainer.node_rank == 1
    preemption = instantiate(cfg.callbacks.preemption)
    assert signal.SIGUSR2 in preemption.signals and preemption.requeue  # submitit's warning signal
