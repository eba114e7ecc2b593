"""Thread defaults of the entry points (`sr_lightning.process`): the intra-op count from the affinity mask and the
cgroup CPU quota, OpenMP's wait settings, each overridable from the environment; one thread in DataLoader workers;
the count stored in training checkpoints and used again on resume."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from _lightning_helpers import quiet_trainer, sample_datamodule
from torch import nn
from torch.utils.data import Dataset

from sr_lightning import process
from sr_lightning.data.datamodule import SRDataModule
from sr_lightning.lightning.module import SRModule
from sr_lightning.lightning.state import restore_intra_op_threads
from sr_lightning.process import (
    MARKER,
    cgroup_cpu_quota,
    intra_op_threads,
    parse_cfs_quota,
    parse_cpu_max,
    physical_cores,
    set_process_defaults,
    user_set,
)

THREAD_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS", MARKER)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """Tests here change torch's intra-op thread count: give the rest of the session its count back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def env(monkeypatch) -> dict[str, str]:
    """A private copy of the environment, without the thread variables, in place of `os.environ`."""
    fake = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    monkeypatch.setattr(os, "environ", fake)
    return fake


# -- the thread count: affinity mask, physical cores, quota ------------------------------------------------------
@pytest.mark.parametrize(
    ("affinity", "quota", "expected"),
    [
        ({0, 1}, None, 2),  # no quota: every CPU of the mask
        ({0, 1, 2, 3, 4, 5, 6, 7}, 2.0, 2),  # a container limited to 2 CPUs on an 8-CPU host
        ({0, 1, 2, 3}, 1.9, 1),  # whole CPUs of the quota: never more threads than it can run at once
        ({0, 1, 2, 3}, 0.5, 1),  # at least one
        ({2, 3}, 16.0, 2),  # a quota above the mask: the mask
        ({5}, None, 1),  # taskset -c 5
        (set(), None, 1),
    ],
)
def test_threads_from_affinity_and_quota(affinity, quota, expected):
    assert intra_op_threads(affinity, quota) == expected


def test_threads_count_physical_cores_of_the_mask():
    core_of = {0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1)}  # CPUs 2 and 3: the hyper-threads of cores 0 and 1
    assert intra_op_threads({0, 1, 2, 3}, None, core_of) == 2
    assert intra_op_threads({0, 2}, None, core_of) == 1
    assert intra_op_threads({0, 1, 2, 3, 4}, None, core_of) == 3  # CPU 4, topology unknown: a core of its own
    assert intra_op_threads({0, 1, 2, 3}, 1.0, core_of) == 1


def test_quota_files():
    assert parse_cpu_max("max 100000\n") is None
    assert parse_cpu_max("200000 100000\n") == 2.0
    assert parse_cpu_max("150000 100000") == 1.5
    assert parse_cfs_quota("-1\n", "100000\n") is None
    assert parse_cfs_quota("50000", "100000") == 0.5


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_the_tightest_of_the_group_and_its_parents(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc_cgroup"
    _write(proc, "0::/jobs/run\n")
    _write(root / "jobs" / "run" / "cpu.max", "max 100000\n")
    _write(root / "jobs" / "cpu.max", "300000 100000\n")
    assert cgroup_cpu_quota(root, proc) == 3.0
    _write(root / "jobs" / "run" / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_quota(root, proc) == 1.5


def test_cgroup_v2_in_a_namespace_reads_the_root(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc_cgroup"
    _write(proc, "0::/\n")
    assert cgroup_cpu_quota(root, proc) is None
    _write(root / "cpu.max", "200000 100000\n")
    assert cgroup_cpu_quota(root, proc) == 2.0


def test_cgroup_v1_cfs_quota(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc_cgroup"
    _write(proc, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    _write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(root, proc) is None
    _write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "400000\n")
    assert cgroup_cpu_quota(root, proc) == 4.0


def test_no_cgroup_files_no_quota(tmp_path):
    assert cgroup_cpu_quota(tmp_path / "none", tmp_path / "no_proc_file") is None


def test_physical_cores_from_sysfs(tmp_path):
    for cpu, core in ((0, 0), (1, 1), (2, 0), (3, 1)):
        _write(tmp_path / f"cpu{cpu}" / "topology" / "physical_package_id", "0\n")
        _write(tmp_path / f"cpu{cpu}" / "topology" / "core_id", f"{core}\n")
    cores = physical_cores({0, 1, 2, 3, 9}, tmp_path)
    assert set(cores) == {0, 1, 2, 3} and cores[0] == cores[2] != cores[1] == cores[3]
    assert intra_op_threads({0, 1, 2, 3, 9}, None, cores) == 3


# -- process defaults: each one yields to the environment ----------------------------------------------------------
def test_defaults_fill_an_empty_environment(env):
    set_now = set_process_defaults()
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["GOMP_SPINCOUNT"] == "3000"
    assert env["OMP_NUM_THREADS"] == str(process.default_intra_op_threads())
    assert {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS"} <= set(set_now)
    assert not any(user_set(name) for name in set_now)
    assert set_process_defaults() == {}  # a child process (or a second call) keeps what its parent chose


@pytest.mark.parametrize(
    ("given", "absent"),
    [
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "GOMP_SPINCOUNT"),  # a spin count would override the chosen policy
        ({"GOMP_SPINCOUNT": "300000"}, "OMP_WAIT_POLICY"),
        ({"MKL_NUM_THREADS": "3"}, "OMP_NUM_THREADS"),  # torch takes MKL's count first
    ],
)
def test_a_variable_set_by_the_user_wins(env, given, absent):
    env.update(given)
    set_process_defaults()
    assert all(env[k] == v for k, v in given.items()) and absent not in env
    assert all(user_set(k) for k in given)


def test_user_thread_count_wins(env):
    env["OMP_NUM_THREADS"] = "3"
    set_process_defaults()
    assert env["OMP_NUM_THREADS"] == "3" and user_set("OMP_NUM_THREADS")
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and not user_set("OMP_WAIT_POLICY")


@pytest.mark.parametrize("given", [None, "1"])
def test_entry_module_sets_the_thread_count_before_torch(given):
    """torch's intra-op count in an entry module's process: the computed default, or the user's OMP_NUM_THREADS."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    if given is not None:
        env["OMP_NUM_THREADS"] = given
    code = (
        "import os, sr_lightning.upscale, torch\n"
        "print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], os.environ.get('OMP_WAIT_POLICY'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    expected = given or str(process.default_intra_op_threads())
    assert out.split()[-3:] == [expected, expected, "PASSIVE"]


# -- DataLoader workers ------------------------------------------------------------------------------------------
class ThreadProbe(Dataset):
    """Items: the intra-op thread count of the process that makes them (after a convolution in it)."""

    scale = 2

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        torch.nn.functional.conv2d(torch.rand(1, 8, 64, 64), torch.rand(8, 8, 3, 3))
        return torch.tensor([torch.get_num_threads(), os.getpid()])


def test_datamodule_workers_run_one_intra_op_thread():
    torch.set_num_threads(2)
    loader = SRDataModule(val=ThreadProbe(), scale=2, num_workers=2).val_dataloader()
    items = torch.cat(list(loader))
    assert set(items[:, 1].tolist()) - {os.getpid()}, "items made in worker processes"
    assert items[:, 0].tolist() == [1, 1, 1, 1]
    assert torch.get_num_threads() == 2  # the main process keeps its count


# -- the thread count in training checkpoints --------------------------------------------------------------------
def tiny_module() -> SRModule:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    return SRModule(
        net, nn.L1Loss(), optimizer=lambda params: torch.optim.Adam(params, lr=1e-3), scale=2, num_val_samples=0
    )


class ThreadsAtStart(L.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.threads = torch.get_num_threads()


def fit(root: Path, max_steps: int, ckpt_path: Path | None = None) -> int:
    """Train the tiny module to ``max_steps`` (resuming from ``ckpt_path``); the intra-op threads its steps ran with."""
    seen = ThreadsAtStart()
    trainer = quiet_trainer(root, [seen], max_steps, None, limit_val_batches=0, enable_checkpointing=False)
    trainer.fit(tiny_module(), datamodule=sample_datamodule(), ckpt_path=ckpt_path)
    trainer.save_checkpoint(root / "last.ckpt")
    return seen.threads


@pytest.fixture
def two_thread_ckpt(tmp_path) -> Path:
    torch.set_num_threads(2)
    fit(tmp_path, 2)
    return tmp_path / "last.ckpt"


def test_checkpoint_stores_the_thread_count_and_resume_uses_it(env, two_thread_ckpt, tmp_path, caplog):
    ckpt = torch.load(two_thread_ckpt, map_location="cpu", weights_only=True)
    assert ckpt["sr_threads"] == 2
    torch.set_num_threads(1)  # another machine's default
    with caplog.at_level(logging.INFO, logger="sr_lightning.lightning.state"):
        assert fit(tmp_path / "resumed", 3, two_thread_ckpt) == 2
    assert "checkpoint's 2 intra-op threads (default here: 1)" in caplog.text
    assert torch.load(tmp_path / "resumed" / "last.ckpt", weights_only=True)["sr_threads"] == 2


def test_defaults_do_not_count_as_a_user_override(env, two_thread_ckpt, tmp_path):
    env.update({"OMP_NUM_THREADS": "1", MARKER: "OMP_NUM_THREADS"})  # set by set_process_defaults, in a parent
    torch.set_num_threads(1)
    assert fit(tmp_path / "resumed", 3, two_thread_ckpt) == 2


def test_user_thread_count_wins_on_resume(env, two_thread_ckpt, tmp_path, caplog):
    env["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    with caplog.at_level(logging.INFO, logger="sr_lightning.lightning.state"):
        assert fit(tmp_path / "resumed", 3, two_thread_ckpt) == 1
    assert "OMP_NUM_THREADS=1 in the environment keeps 1 (not a bitwise resume)" in caplog.text


def test_restore_without_change_logs_nothing(env, caplog):
    torch.set_num_threads(2)
    with caplog.at_level(logging.INFO, logger="sr_lightning.lightning.state"):
        assert restore_intra_op_threads(2) == 2
    assert caplog.text == ""
