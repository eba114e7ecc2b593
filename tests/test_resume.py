"""Checkpoints that survive a kill (atomic writes, one last.ckpt), pre-emption by a real signal, and finding the
checkpoint to resume from. Tiny network, embedded sample photographs."""

from __future__ import annotations

import io
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from _lightning_helpers import quiet_trainer, sample_datamodule
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

from sr_lightning.lightning.callbacks import LastCheckpoint, Preemption, preemption_exit_code
from sr_lightning.lightning.callbacks.preemption import PREEMPTION_EXIT_CODE, slurm_job_id
from sr_lightning.lightning.checkpoint_io import AtomicCheckpointIO
from sr_lightning.lightning.module import SRModule
from sr_lightning.utils.resume import find_resume_checkpoint, last_checkpoints, wandb_run_id


def tiny_module() -> SRModule:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.PReLU(8), nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2))
    return SRModule(
        net, nn.L1Loss(), optimizer=lambda params: torch.optim.Adam(params, lr=1e-3), scale=2, num_val_samples=0
    )


class Steps(Callback):
    """Records the training steps and validation runs of a fit."""

    def __init__(self) -> None:
        self.trained: list[int] = []
        self.validated: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.trained.append(trainer.global_step)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validated.append(trainer.global_step)


class RecordingIO(AtomicCheckpointIO):
    """Records (file name, global step) of every checkpoint written."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[tuple[str, int]] = []

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        super().save_checkpoint(checkpoint, path, storage_options)
        self.saved.append((Path(path).name, checkpoint["global_step"]))


def trainer(root: Path, callbacks: list[Callback], max_steps: int, val_every: int = 1000, **kw) -> L.Trainer:
    defaults = {"limit_val_batches": 1, "plugins": [AtomicCheckpointIO()]}  # kw may replace them
    return quiet_trainer(root, callbacks, max_steps, val_every, **{**defaults, **kw})


def ckpt_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


@pytest.fixture(scope="module")
def real_ckpt(tmp_path_factory) -> Path:
    """A real Lightning checkpoint of the tiny module after 2 steps."""
    root = tmp_path_factory.mktemp("real")
    trainer(root, [LastCheckpoint(dirpath=root / "ckpt")], max_steps=2).fit(
        tiny_module(), datamodule=sample_datamodule()
    )
    return root / "ckpt" / "last.ckpt"


# -- AtomicCheckpointIO ----------------------------------------------------------------------------------------
def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, real_ckpt, monkeypatch):
    io_plugin = AtomicCheckpointIO()
    target = tmp_path / "checkpoints" / "last.ckpt"
    previous = torch.load(real_ckpt, map_location="cpu", weights_only=False)
    io_plugin.save_checkpoint(previous, target)
    before = target.read_bytes()

    newer = dict(previous, global_step=previous["global_step"] + 1)
    buf = io.BytesIO()
    torch.save(newer, buf)
    real_save = torch.save

    def killed_midway(obj, f, *args, **kwargs):  # half of the real bytes reach the disk, then the write dies
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", killed_midway)
    with pytest.raises(OSError, match="no space"):
        io_plugin.save_checkpoint(newer, target)
    monkeypatch.setattr(torch, "save", real_save)

    assert target.read_bytes() == before  # untouched, still loadable
    assert io_plugin.load_checkpoint(target)["global_step"] == previous["global_step"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # the temp file was removed


def test_leftover_of_a_killed_write_is_never_taken_for_a_checkpoint(tmp_path, real_ckpt):
    target = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(torch.load(real_ckpt, weights_only=False), target)
    old = target.stat().st_mtime
    # What a SIGKILL during torch.save leaves: the temp file with the first half of a checkpoint, newer than target.
    # Its writer's PID is one of a process that has ended: a live writer's file would be kept (a write in progress).
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    leftover = target.parent / f".last.ckpt.{killed.pid}.deadbeef.tmp"
    leftover.write_bytes(real_ckpt.read_bytes()[: real_ckpt.stat().st_size // 2])
    os.utime(leftover, (old + 60, old + 60))

    assert find_resume_checkpoint("auto", None, tmp_path) == target
    assert ModelCheckpoint(dirpath=target.parent)._find_last_checkpoints(trainer(tmp_path, [], 1)) == {str(target)}
    AtomicCheckpointIO().save_checkpoint(torch.load(real_ckpt, weights_only=False), target)
    assert not leftover.exists()  # superseded by the next complete write


def test_saved_file_permissions_follow_the_umask(tmp_path, real_ckpt):
    umask = os.umask(0o027)
    try:
        AtomicCheckpointIO().save_checkpoint(torch.load(real_ckpt, weights_only=False), tmp_path / "x.ckpt")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "x.ckpt").stat().st_mode) == 0o640  # 0o666 & ~0o027, as open() would give


def test_trainer_config_builds_the_atomic_plugin(tmp_path):
    from compose import compose_cfg
    from hydra.utils import instantiate

    cfg = compose_cfg("train", [], tmp_path)
    built = instantiate(cfg.trainer, logger=False)
    assert type(built.strategy.checkpoint_io) is AtomicCheckpointIO


def test_callbacks_config_has_one_writer_of_last_ckpt(tmp_path):
    from compose import compose_cfg

    from sr_lightning.utils.instantiate import instantiate_dict

    cfg = compose_cfg("train", [], tmp_path)
    callbacks = instantiate_dict(cfg.callbacks)
    writers = [cb for cb in callbacks if isinstance(cb, ModelCheckpoint) and cb.save_last]
    assert [type(cb) for cb in writers] == [LastCheckpoint]
    assert writers[0].dirpath == str(tmp_path / "checkpoints") and writers[0]._every_n_train_steps == 100
    (preemption,) = [cb for cb in callbacks if isinstance(cb, Preemption)]
    assert preemption.signals == [signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2] and preemption.exit_code == 143


# -- LastCheckpoint ----------------------------------------------------------------------------------------------
def test_last_checkpoint_every_n_steps_and_after_each_validation(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    (ckpt_dir / "last.ckpt").write_bytes(b"stale file of an earlier run")  # overwritten, no last-v1.ckpt beside it
    last = LastCheckpoint(dirpath=ckpt_dir, every_n_train_steps=2)
    best = ModelCheckpoint(dirpath=ckpt_dir, monitor="val/psnr", mode="max", filename="best")
    rec = RecordingIO()
    fit = trainer(tmp_path, [last, best], max_steps=6, val_every=3, plugins=[rec])
    fit.fit(tiny_module(), datamodule=sample_datamodule())

    # Steps 2, 4, 6 (period) and after the validations at 3 and 6 (6 again: the best checkpoint may have changed);
    # nothing more at the end, step 6 is on disk.
    assert [step for name, step in rec.saved if name == "last.ckpt"] == [2, 3, 4, 6, 6]
    assert fit.callbacks[-1] is last  # moved behind the best checkpoint callback: it saves that one's fresh state
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["best.ckpt", "last.ckpt"]
    ckpt = torch.load(ckpt_dir / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 6
    state = ckpt["callbacks"][best.state_key]
    assert state["best_model_path"] == best.best_model_path == str(ckpt_dir / "best.ckpt")
    assert state["best_model_score"] == best.best_model_score


def test_last_checkpoint_at_the_end_of_training(tmp_path):
    rec = RecordingIO()
    fit = trainer(tmp_path, [LastCheckpoint(dirpath=tmp_path, every_n_train_steps=2)], max_steps=5, plugins=[rec])
    fit.fit(tiny_module(), datamodule=sample_datamodule())
    assert rec.saved == [("last.ckpt", 2), ("last.ckpt", 4), ("last.ckpt", 5)]


# -- Preemption in process ---------------------------------------------------------------------------------------
class SignalAt(Callback):
    """Sends ``signum`` to this very process at training step ``step``."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def test_signal_stops_at_the_next_batch_end_with_a_checkpoint(tmp_path):
    handler_before = signal.getsignal(signal.SIGUSR1)
    steps, preemption, rec = Steps(), Preemption(dirpath=tmp_path / "ckpt"), RecordingIO()
    last = LastCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4)
    callbacks = [SignalAt(3, signal.SIGUSR1), steps, preemption, last]
    # A validation is due at step 3; min_steps would keep Lightning going after should_stop: pre-emption overrides.
    fit = trainer(tmp_path, callbacks, max_steps=20, val_every=3, min_steps=20, plugins=[rec])
    fit.fit(tiny_module(), datamodule=sample_datamodule())

    assert preemption.preempted and preemption.signal_name == "SIGUSR1" and preemption.stopped_at_step == 3
    assert preemption_exit_code(fit) == PREEMPTION_EXIT_CODE == 143
    assert fit.global_step == 3 and steps.trained == [1, 2, 3]
    assert steps.validated == []  # no validation squeezed into the grace period
    assert rec.saved == [("last.ckpt", 3)]  # LastCheckpoint knows the file is current: no second write at the end
    assert ckpt_step(tmp_path / "ckpt" / "last.ckpt") == 3
    assert signal.getsignal(signal.SIGUSR1) == handler_before  # handlers given back after the fit


def test_signal_during_the_last_validation_still_ends_preempted(tmp_path):
    class SignalInValidation(Callback):
        def on_validation_end(self, trainer, pl_module) -> None:
            if not trainer.sanity_checking:
                os.kill(os.getpid(), signal.SIGTERM)

    preemption, rec = Preemption(), RecordingIO()
    last = LastCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=0)
    fit = trainer(tmp_path, [SignalInValidation(), preemption, last], max_steps=4, val_every=4, plugins=[rec])
    fit.fit(tiny_module(), datamodule=sample_datamodule())
    assert preemption_exit_code(fit) == 143 and preemption.signal_name == "SIGTERM"
    assert preemption.checkpoint_path == tmp_path / "ckpt" / "last.ckpt"  # the LastCheckpoint's file
    assert rec.saved == [("last.ckpt", 4)]  # written after validation; nothing left to write at the end


def test_no_signal_no_exit_code(tmp_path):
    fit = trainer(tmp_path, [Preemption()], max_steps=2)
    fit.fit(tiny_module(), datamodule=sample_datamodule())
    assert preemption_exit_code(fit) is None


def test_bad_signal_name_and_slurm_job_id(monkeypatch):
    with pytest.raises(ValueError, match="SIGWHAT"):
        Preemption(signals=["SIGTERM", "SIGWHAT"])
    assert Preemption(signals=["usr2", "TERM"]).signals == [signal.SIGUSR2, signal.SIGTERM]
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(var, raising=False)
    assert slurm_job_id() is None
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    assert slurm_job_id() == "123"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "120")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert slurm_job_id() == "120_3"


# -- Preemption: a real signal to a real training process ----------------------------------------------------------
SCRIPT = (
    f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
    + '''
import lightning as L
from _lightning_helpers import quiet_trainer, sample_datamodule
from test_resume import Steps, tiny_module
import time
from pathlib import Path

from sr_lightning.lightning.callbacks import LastCheckpoint, Preemption, preemption_exit_code
from sr_lightning.lightning.checkpoint_io import AtomicCheckpointIO


class Announce(L.Callback):
    """Prints the step; at step k waits (at most 60 s) for the test's signal, so the stop step is exact."""

    def __init__(self, k: int, preemption: Preemption) -> None:
        self.k, self.preemption = k, preemption

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if trainer.global_step == self.k and trainer.is_global_zero:
            print(f"step {self.k}", flush=True)
            deadline = time.monotonic() + 60
            while self.preemption.signal_received is None and time.monotonic() < deadline:
                time.sleep(0.01)


def main(root: Path, k: int, max_steps: int, devices: int) -> None:
    preemption = Preemption(dirpath=root / "ckpt")
    steps = Steps()
    callbacks = [Announce(k, preemption), steps, preemption, LastCheckpoint(dirpath=root / "ckpt")]
    trainer = quiet_trainer(  # a validation is due at the stop step (val_every=k): it must not run
        root, callbacks, max_steps, k, limit_val_batches=1, plugins=[AtomicCheckpointIO()],
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
    )
    trainer.fit(tiny_module(), datamodule=sample_datamodule())
    print(f"rank {trainer.global_rank} stopped at {trainer.global_step} validated {steps.validated}", flush=True)
    sys.exit(preemption_exit_code(trainer) or 0)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
'''
)


def run_and_signal(tmp_path: Path, signum: int, k: int, max_steps: int, devices: int = 1, env: dict | None = None):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    stderr = tmp_path / "stderr.txt"
    cmd = [sys.executable, str(script), str(tmp_path), str(k), str(max_steps), str(devices)]
    with stderr.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env={**os.environ, **(env or {})})
        lines = []
        try:
            deadline = time.monotonic() + 120
            for line in proc.stdout:
                lines.append(line)
                if line.strip() == f"step {k}":
                    proc.send_signal(signum)
                    break
                assert time.monotonic() < deadline, "no 'step k' line"
            out, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    return proc.returncode, "".join(lines) + out, stderr.read_text()


def fake_scontrol(tmp_path: Path) -> tuple[dict, Path]:
    """A `scontrol` on PATH that records its arguments, and the environment of a one-task SLURM job."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol_calls.txt"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "1",  # with SLURM_JOB_NAME: Lightning detects SLURM and installs its auto-requeue handler
        "SLURM_JOB_NAME": "sr-test",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
    }
    return env, calls


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGUSR1", "SIGUSR2"])  # SIGUSR2: submitit's (hydra/launcher=slurm)
def test_real_signal_checkpoints_exits_143_and_resumes(tmp_path, signame):
    k, max_steps = 3, 6
    env, calls = fake_scontrol(tmp_path)
    code, out, err = run_and_signal(tmp_path, getattr(signal, signame), k, max_steps, env=env)

    assert code == 143, out + err
    assert f"rank 0 stopped at {k} validated []" in out, out + err
    last = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt_step(last) == k
    assert not list(tmp_path.glob("**/hpc_ckpt_*.ckpt"))  # Lightning's SLURM handler never ran
    # Requeue on the scheduler's warning signal only (scancel and SLURM pre-emption send SIGTERM).
    requeued = calls.read_text().splitlines() if calls.exists() else []
    assert requeued == (["requeue 4242"] if signame != "SIGTERM" else [])

    steps, preemption = Steps(), Preemption()
    resumed = trainer(tmp_path / "resumed", [steps, preemption, LastCheckpoint(dirpath=last.parent)], max_steps)
    resumed.fit(tiny_module(), datamodule=sample_datamodule(), ckpt_path=last)
    assert steps.trained == list(range(k + 1, max_steps + 1))
    assert preemption_exit_code(resumed) is None and ckpt_step(last) == max_steps


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_real_signal_to_rank_zero_stops_both_ddp_ranks(tmp_path):
    k = 2
    code, out, err = run_and_signal(tmp_path, signal.SIGTERM, k, max_steps=50, devices=2)
    assert code == 143, out + err
    assert ckpt_step(tmp_path / "ckpt" / "last.ckpt") == k
    assert f"rank 0 stopped at {k} validated []" in out, out + err  # rank 1 prints to the same stdout
    assert f"rank 1 stopped at {k} validated []" in out, out + err


# -- find_resume_checkpoint / wandb_run_id ------------------------------------------------------------------------
def place(src: Path, dst: Path, mtime: float) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    os.utime(dst, (mtime, mtime))
    return dst


def test_auto_takes_the_newest_readable_last_ckpt(tmp_path, real_ckpt, caplog):
    now = time.time()
    own = place(real_ckpt, tmp_path / "checkpoints" / "last.ckpt", now - 30)
    nested = place(real_ckpt, tmp_path / "runs" / "b" / "checkpoints" / "last.ckpt", now - 20)
    broken = tmp_path / "runs" / "c" / "checkpoints" / "last.ckpt"
    place(real_ckpt, broken, now - 10).write_bytes(real_ckpt.read_bytes()[:1000])
    os.utime(broken, (now - 10, now - 10))
    place(real_ckpt, tmp_path / "checkpoints" / "best.ckpt", now)  # not a last.ckpt

    assert last_checkpoints(tmp_path) == [broken, nested, own]
    with caplog.at_level(logging.WARNING, logger="sr_lightning.utils.resume"):
        assert find_resume_checkpoint("auto", None, tmp_path) == nested
    assert "skipping unreadable checkpoint" in caplog.text and str(broken) in caplog.text
    assert find_resume_checkpoint(str(tmp_path / "checkpoints"), None, "/nonexistent") == own  # resume=<dir>
    assert find_resume_checkpoint(str(own), None, tmp_path) == own  # resume=<file>


def test_explicit_ckpt_path_wins_and_must_exist(tmp_path, real_ckpt):
    own = place(real_ckpt, tmp_path / "checkpoints" / "last.ckpt", time.time())
    explicit = place(real_ckpt, tmp_path / "elsewhere.ckpt", time.time() - 100)
    assert find_resume_checkpoint("auto", str(explicit), tmp_path) == explicit
    assert find_resume_checkpoint(None, explicit, tmp_path) == explicit
    with pytest.raises(FileNotFoundError, match="ckpt_path=.*missing.ckpt"):
        find_resume_checkpoint("auto", tmp_path / "missing.ckpt", tmp_path)
    assert find_resume_checkpoint(None, None, tmp_path) is None  # no resume asked: fresh, even with own present
    assert own.is_file()


def test_nothing_to_resume_is_a_fresh_start(tmp_path, real_ckpt, caplog):
    with caplog.at_level(logging.INFO, logger="sr_lightning.utils.resume"):
        assert find_resume_checkpoint("auto", None, tmp_path) is None
    assert "starting fresh" in caplog.text
    broken = place(real_ckpt, tmp_path / "checkpoints" / "last.ckpt", time.time())
    broken.write_bytes(b"")
    assert find_resume_checkpoint("auto", None, tmp_path) is None  # only an unreadable one
    assert find_resume_checkpoint(str(tmp_path), None, "/nonexistent") is None
    with pytest.raises(FileNotFoundError, match="resume=.*no such file or folder"):
        find_resume_checkpoint(str(tmp_path / "typo"), None, tmp_path)


def test_wandb_run_id_from_checkpoint(tmp_path, real_ckpt):
    assert wandb_run_id(real_ckpt) is None  # no W&B logger in that run
    ckpt = torch.load(real_ckpt, weights_only=False)
    ckpt["sr_wandb_id"] = "3fk2x9ab"
    torch.save(ckpt, tmp_path / "w.ckpt")
    assert wandb_run_id(tmp_path / "w.ckpt") == "3fk2x9ab"
