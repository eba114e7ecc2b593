"""A real training process killed with SIGKILL (or pre-empted with SIGTERM) resumes exactly through the entry point.

The resumed run's loss at every step and its final weights must equal the uninterrupted run's: the checkpoint holds
the step, optimizer, scheduler and RNG states, and the data position (`SRDataModule.state_dict`); patches are keyed
by (seed, epoch, index), so the worker count does not change them either.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_entry_points import run

pytestmark = pytest.mark.slow

STEPS = 12
TINY = (
    "model.channels=16",
    "model.num_blocks=3",
    "model.esa_channels=4",
    "scale=2",
    f"trainer.max_steps={STEPS}",
    "trainer.log_every_n_steps=1",
    "stage.val_every_n_steps=4",
    "stage.batch_size=2",
    "stage.lr_patch_size=16",
    "data.repeat=1",  # 5 steps per epoch: the run crosses two epoch boundaries
    "trainer.limit_val_batches=1",
    "callbacks.last_checkpoint.every_n_train_steps=3",
    "+logger.csv.flush_logs_every_n_steps=1",  # a SIGKILL loses what the CSV logger has not flushed
    "test=false",
)


def losses(run_dir: Path) -> dict[int, float]:
    """step -> train/loss over every CSV log version of the run (a resumed run writes a new version)."""
    out: dict[int, float] = {}
    for metrics in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        for row in csv.DictReader(metrics.open()):
            if row.get("train/loss"):
                out[int(row["step"])] = float(row["train/loss"])
    return out


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == STEPS
    return ckpt["state_dict"]


def start(run_dir: Path, workers: int, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline"}
    args = [
        sys.executable,
        "-m",
        "sr_lightning.train",
        *TINY,
        f"data.num_workers={workers}",
        f"hydra.run.dir={run_dir}",
    ]
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_after_first_checkpoint(proc: subprocess.Popen, run_dir: Path, sig: int) -> None:
    """Send `sig` as soon as the first periodic last.ckpt (step 3) exists: training is then in steps 4-5."""
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists():
        assert proc.poll() is None, f"training ended before its first checkpoint:\n{proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.02)
    proc.send_signal(sig)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("full") / "run"
    run("sr_lightning.train", *TINY, "data.num_workers=0", f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    return run_dir


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_then_resume_auto_equals_uninterrupted(uninterrupted, workers, tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir, workers, tmp_path)
    kill_after_first_checkpoint(proc, run_dir, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    killed_at = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 0 < killed_at < STEPS

    # The same command with resume=auto continues the run in its (fixed) directory.
    run(
        "sr_lightning.train",
        *TINY,
        f"data.num_workers={workers}",
        "resume=auto",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    expected, got = losses(uninterrupted), losses(run_dir)
    assert set(expected) == set(range(STEPS)) and set(range(killed_at, STEPS)) <= set(got) <= set(expected)
    for step in got:  # bitwise on one machine; 1e-6 leaves room for non-deterministic CPU kernels
        assert got[step] == pytest.approx(expected[step], abs=1e-6), (step, got[step], expected[step])
    print(f"workers={workers}: losses by step, uninterrupted vs resumed:")
    print("  " + " ".join(f"{s}:{expected[s]:.6f}/{got.get(s, float('nan')):.6f}" for s in sorted(expected)))
    a, b = final_weights(uninterrupted), final_weights(run_dir)
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    print(f"workers={workers}: killed at step {killed_at}; max |weight difference| = {diff:.3g}")
    assert diff <= 1e-6


def test_sigterm_writes_last_ckpt_exits_143_and_resumes(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir, 0, tmp_path)
    kill_after_first_checkpoint(proc, run_dir, signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, proc.stderr.read()[-3000:]
    stopped_at = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 3 < stopped_at < STEPS  # written at the signal, after the periodic step-3 checkpoint
    assert not (run_dir / "weights").exists()  # pre-empted: no export, no test
    run("sr_lightning.train", *TINY, "data.num_workers=0", "resume=auto", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    a, b = final_weights(uninterrupted), final_weights(run_dir)
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) <= 1e-6


def test_resumed_run_continues_the_wandb_run(tmp_path):
    run_dir = tmp_path / "run"
    common = (*TINY, "data.num_workers=0", "logger=wandb", "logger.wandb.offline=true", f"hydra.run.dir={run_dir}")
    run("sr_lightning.train", *common, "trainer.max_steps=3", cwd=tmp_path)
    first_id = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["sr_wandb_id"]
    run("sr_lightning.train", *common, "trainer.max_steps=6", "resume=auto", cwd=tmp_path)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 6 and ckpt["sr_wandb_id"] == first_id
    runs = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(name.endswith(f"-{first_id}") for name in runs), runs
