"""One training run at a time in a run directory (sr_lightning.utils.run_lock): real processes, a real SIGKILL, and
real `python -m sr_lightning.train` runs (two DDP ranks on the CPU; a second train refused)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_entry_points import TINY_TRAIN as ENTRY_TINY_TRAIN

from sr_lightning.utils.run_lock import LOCK_NAME, RANK_VARIABLES, RunDirBusy, is_launching_process, run_dir_lock

# A training run of two steps on the embedded sample data, no test loop, one validation batch.
TINY_TRAIN = (*ENTRY_TINY_TRAIN, "trainer.limit_val_batches=1")
# What the launching process's environment must not hold for the child processes below to take the lock.
_CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in RANK_VARIABLES}


def busy_message(run_dir: Path, pid: int) -> str:
    return (
        f"error: another training run (PID {pid} on {socket.gethostname()}) is using the run directory {run_dir}; "
        "wait for it to end (or stop it), or give this run another hydra.run.dir"
    )


def holder(run_dir: Path, fork_worker: bool = False) -> subprocess.Popen:
    """A real process that holds `run_dir` until it is killed (it prints "held" once it does); `fork_worker`: it
    first forks a child that outlives it (as DataLoader workers outlive a SIGKILLed run for a while)."""
    script = textwrap.dedent(f"""
        import os, time
        from sr_lightning.utils.run_lock import run_dir_lock
        with run_dir_lock({str(run_dir)!r}):
            if {fork_worker!r} and os.fork() == 0:
                time.sleep(20)
                os._exit(0)
            print("held", flush=True)
            time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=_CLEAN_ENV)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_with_the_directory_and_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    with run_dir_lock(run_dir) as held:
        assert held and (run_dir / LOCK_NAME).read_text().split() == [str(os.getpid()), socket.gethostname()]
        script = f"from sr_lightning.utils.run_lock import run_dir_lock\nrun_dir_lock({str(run_dir)!r}).__enter__()"
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_CLEAN_ENV)
        assert proc.returncode == 1 and proc.stderr.strip() == busy_message(run_dir, os.getpid())  # no traceback
    assert not (run_dir / LOCK_NAME).exists()  # released: removed while still locked


def test_the_lock_of_a_killed_run_does_not_block_the_next(tmp_path):
    """SIGKILL (a pre-empted node, the OOM killer): the kernel drops the flock; the file left behind is harmless."""
    run_dir = tmp_path / "run"
    proc = holder(run_dir)
    with pytest.raises(RunDirBusy) as info, run_dir_lock(run_dir):
        pass
    assert str(info.value) == busy_message(run_dir, proc.pid) and info.value.code == str(info.value)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert (run_dir / LOCK_NAME).read_text().split()[0] == str(proc.pid)  # left behind by the killed holder
    with run_dir_lock(run_dir) as held:  # resume=auto in the same directory starts
        assert held and (run_dir / LOCK_NAME).read_text().split()[0] == str(os.getpid())


def test_a_forked_worker_outliving_a_killed_run_does_not_keep_its_lock(tmp_path):
    run_dir = tmp_path / "run"
    proc = holder(run_dir, fork_worker=True)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    with run_dir_lock(run_dir) as held:  # the child still runs, with its copy of the descriptor closed
        assert held


def test_nested_holds_in_one_process(tmp_path):
    """The Hydra callback and the entry point both hold the directory of a single run."""
    with run_dir_lock(tmp_path) as outer, run_dir_lock(f"{tmp_path}/./") as inner:
        assert outer and inner
    with run_dir_lock(tmp_path) as again:  # released once, after the outer hold
        assert again


@pytest.mark.parametrize("variable", RANK_VARIABLES)
def test_other_ranks_of_the_run_do_not_take_it(tmp_path, monkeypatch, variable):
    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert is_launching_process()
    monkeypatch.setenv(variable, "0")  # rank 0 of a launcher (the launching process after Lightning's launch)
    assert is_launching_process()
    monkeypatch.setenv(variable, "1")
    with run_dir_lock(tmp_path) as held:
        assert not held and not (tmp_path / LOCK_NAME).exists()


def train(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**_CLEAN_ENV, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    cmd = [sys.executable, "-m", "sr_lightning.train", *TINY_TRAIN, *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.run(cmd, cwd=run_dir.parent, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_ddp_training_holds_its_directory_once_and_a_second_train_is_refused(tmp_path):
    """The DDP rank Lightning starts runs the entry point again in the same directory: it must not take the lock
    (it would be refused, and the run would hang or fail). Then, with the directory held, `train` exits 1 at once
    with the one-line message; with the `RunDirLock` Hydra callback it leaves the running run's .hydra/ intact."""
    run_dir = tmp_path / "run"
    proc = train(run_dir, "hardware=ddp_cpu", "trainer.devices=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in proc.stderr and (run_dir / "weights" / "model.pth").is_file()
    assert not (run_dir / LOCK_NAME).exists()
    overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
    log = (run_dir / "train.log").read_text()

    without_callback = "~hydra.callbacks.run_lock"  # conf/train.yaml takes it before Hydra writes .hydra/
    with run_dir_lock(run_dir):
        for extra in ((), (without_callback,)):
            second = train(run_dir, "trainer.max_steps=5", *extra)
            assert second.returncode == 1 and second.stderr.strip() == busy_message(run_dir, os.getpid()), extra
            assert (run_dir / "train.log").read_text() == log  # nothing of the refused run in the log
            if not extra:  # locked before Hydra writes .hydra/ (the entry point alone comes after it)
                assert (run_dir / ".hydra" / "overrides.yaml").read_text() == overrides
