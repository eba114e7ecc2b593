"""Process settings of the entry points (never of the library: importing `sr_lightning` changes nothing).

Each entry module (`sr_lightning.train`, ``test``, ``upscale``, ``export``, ``complexity``, ``benchmark``) calls
`set_process_defaults()` at its very top, before anything imports torch or allocates a tensor: torch and its OpenMP
runtime (GNU libgomp in the Linux wheels) read these variables once, when they load or first allocate. Every setting
is a default: a value already in the environment wins, so users override each one there (in your own scripts, set
them before importing torch).

- ``THP_MEM_ALLOC_ENABLE=1``: PyTorch's CPU allocator backs tensors of 2 MB and more with transparent huge pages. It
  reads the variable once, at torch's first allocation. A CPU training step allocates its large activations afresh
  every step; on 4 KiB pages the kernel's page faults took half the CPU time of an EFDN x4 batch-64 step on 2 cores,
  and more beside DataLoader workers (benchmarks/data_throughput.py). ``THP_MEM_ALLOC_ENABLE=0`` turns it off.
- ``OMP_WAIT_POLICY=PASSIVE`` and ``GOMP_SPINCOUNT=3000``: how an OpenMP thread waits for its siblings at the end of
  a parallel region and for the next region. libgomp's own default spins 300,000 times (about 7 ms on this CPU)
  before it sleeps. On a busy machine a sibling is often preempted, and the waiting thread spins through its time
  slice: beside one busy-loop process per core, an EFDN x4 quickstart training step used 2-4.5x the CPU of a quiet
  one. A passive wait sleeps at once, but each of the thousands of small parallel regions of a step then pays a
  futex wake: quiet steps took a third longer. 3,000 spins (about 70 us here; libgomp only, and it takes precedence
  over the policy's spin count) keep the quiet speed and save as much as passive waiting. Setting either variable
  yourself leaves both alone: ``OMP_WAIT_POLICY=ACTIVE``, or ``GOMP_SPINCOUNT=300000`` for libgomp's default.
  What remains under load is oneDNN's own spin barrier (in the backward pass of 1x1 convolutions), which no OpenMP
  setting reaches. Measured with ``benchmarks/efdn_train_step.py --busy``.
- ``OMP_NUM_THREADS=<n>``: torch's intra-op threads (and MKL's, and OpenBLAS's): one per physical core the process may
  run on (``os.sched_getaffinity``), at most the whole CPUs of its cgroup CPU quota (cgroup v2 ``cpu.max``, v1
  ``cpu.cfs_quota_us / cpu.cfs_period_us``), at least 1 (`intra_op_threads`). Never from the momentary load, which
  changes while the run goes on. torch alone follows the affinity mask but not the quota: in a cgroup limited to 1
  CPU on this 2-core machine torch chose 2 threads, this default 1. Setting ``OMP_NUM_THREADS`` or
  ``MKL_NUM_THREADS`` yourself leaves it alone. DataLoader workers run one intra-op thread whatever this says
  (torch's worker loop calls ``torch.set_num_threads(1)``). A training checkpoint stores the count and a resumed fit
  uses it again, for bitwise resumes (`sr_lightning.lightning.state.restore_intra_op_threads`); a count you set in
  the environment wins there too.

``SR_PROCESS_DEFAULTS_SET`` is bookkeeping, not a setting: the names these defaults set, so that a child process (a
DDP rank, a DataLoader worker) can tell them from values a user set (`user_set`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Hashable, Mapping
from pathlib import Path

#: variable -> default value, set when the environment does not already hold the variable
PROCESS_DEFAULTS: dict[str, str] = {"THP_MEM_ALLOC_ENABLE": "1"}

#: OpenMP wait settings, set together and only when the environment holds none of them
OPENMP_WAIT_DEFAULTS: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}

#: the variables that choose the intra-op thread count; `OMP_NUM_THREADS` is set when none is in the environment
THREAD_COUNT_VARIABLES: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

#: the names `set_process_defaults` set in this process or a parent (comma-separated)
MARKER = "SR_PROCESS_DEFAULTS_SET"

CGROUP_ROOT = Path("/sys/fs/cgroup")
SYSFS_CPU = Path("/sys/devices/system/cpu")


def set_process_defaults() -> dict[str, str]:
    """Set each default the environment lacks (see the module docstring); returns the variables set."""
    missing = {k: v for k, v in PROCESS_DEFAULTS.items() if k not in os.environ}
    if not any(k in os.environ for k in OPENMP_WAIT_DEFAULTS):
        missing.update(OPENMP_WAIT_DEFAULTS)
    if not any(k in os.environ for k in THREAD_COUNT_VARIABLES):
        missing["OMP_NUM_THREADS"] = str(default_intra_op_threads())
    os.environ.update(missing)
    if missing:
        os.environ[MARKER] = ",".join(sorted(_defaulted() | set(missing)))
    return missing


def _defaulted() -> set[str]:
    return {name for name in os.environ.get(MARKER, "").split(",") if name}


def user_set(name: str) -> bool:
    """Whether the environment holds ``name`` with a value not set by `set_process_defaults` (here or in a parent)."""
    return name in os.environ and name not in _defaulted()


def intra_op_threads(
    affinity: Collection[int], quota: float | None = None, core_of: Mapping[int, Hashable] | None = None
) -> int:
    """One thread per physical core among the ``affinity`` CPUs, at most ``floor(quota)``, at least 1.

    Args:
        affinity: the CPUs the process may run on (`os.sched_getaffinity`).
        quota: the cgroup CPU quota in CPUs (quota / period), None when unlimited.
        core_of: CPU -> its physical core (hyper-threads of one core share it); a CPU not in it is a core of its own.
    """
    core_of = core_of or {}
    cores = len({core_of.get(cpu, ("cpu", cpu)) for cpu in affinity})
    if quota is not None:
        cores = min(cores, math.floor(quota))
    return max(1, cores)


def default_intra_op_threads() -> int:
    """`intra_op_threads` of this process: its affinity mask, cgroup quota and the CPU topology in sysfs."""
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    return intra_op_threads(affinity, cgroup_cpu_quota(), physical_cores(affinity))


def parse_cpu_max(text: str) -> float | None:
    """CPUs of a cgroup v2 ``cpu.max`` (``"<quota> <period>"``; quota ``max``: None)."""
    quota, _, period = text.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def parse_cfs_quota(quota_us: str, period_us: str) -> float | None:
    """CPUs of cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1: None)."""
    quota, period = int(quota_us), int(period_us)
    return None if quota <= 0 or period <= 0 else quota / period


def _cgroup_dirs(proc_cgroup: str, root: Path) -> list[Path]:
    """This process's cgroup folders holding CPU quotas (v2 unified and v1 ``cpu`` controller) and their parents."""
    dirs = []
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base = [root, root / "unified"]
        elif "cpu" in controllers.split(","):
            base = [root / "cpu", root / "cpu,cpuacct", root / controllers]
        else:
            continue
        rel = Path(path.lstrip("/"))
        for top in base:
            dirs += [top / p for p in [rel, *rel.parents]]
    return list(dict.fromkeys(dirs))


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The tightest CPU quota of this process's cgroup and its parents, in CPUs; None when there is none."""
    try:
        dirs = _cgroup_dirs(proc_cgroup.read_text(), root)
    except OSError:
        dirs = [root, root / "cpu"]
    quotas = []
    for d in dirs:
        try:
            if (d / "cpu.max").is_file():
                quotas.append(parse_cpu_max((d / "cpu.max").read_text()))
            elif (d / "cpu.cfs_quota_us").is_file():
                quotas.append(
                    parse_cfs_quota((d / "cpu.cfs_quota_us").read_text(), (d / "cpu.cfs_period_us").read_text())
                )
        except (OSError, ValueError):
            continue
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def physical_cores(cpus: Collection[int], sysfs: Path = SYSFS_CPU) -> dict[int, Hashable]:
    """CPU -> (package, core) from sysfs topology, for the CPUs whose topology is readable."""
    cores: dict[int, Hashable] = {}
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            cores[cpu] = (
                (topology / "physical_package_id").read_text().strip(),
                (topology / "core_id").read_text().strip(),
            )
        except OSError:
            continue
    return cores
