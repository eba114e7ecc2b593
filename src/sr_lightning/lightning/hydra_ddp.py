"""DDP under Hydra: the processes Lightning starts run this job, in this job's directory, as a single run.

Lightning's subprocess launcher (DDP with `strategy=ddp` / `trainer.devices=N`) starts ranks 1..N-1 by running the
command line again. Under Hydra it repeats ``sys.argv`` and adds ``hydra.run.dir=<hydra.run.dir>``
(`lightning.fabric.strategies.launchers.subprocess_script._hydra_subprocess_cmd`). In a multirun job that is wrong
twice: ``-m`` (or an `hparams_search` config, which sets ``hydra.mode: MULTIRUN``) makes every rank launch the whole
sweep again, and ``hydra.run.dir`` is the single-run pattern, not the job's ``<sweep dir>/<job>`` directory, so the
ranks would write into a stray ``runs/<date>`` folder. `job_command` builds the command from the job itself: its
overrides (the sweep values included), its output directory, ``hydra.mode=RUN``. For a single run it gives the same
directory as Lightning's.

The basic launcher runs the jobs of a multirun one after another in one process. Lightning leaves that process in
DDP state after a fit: the process group stays initialised and the launcher's variables (``LOCAL_RANK``,
``WORLD_SIZE``, ...) stay in ``os.environ``, so the next job would take itself for a child rank, start no processes
and wait for peers that are gone. `ddp_job_scope` puts the process back as the job found it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd, to_absolute_path


def job_command(local_rank: int) -> tuple[list[str], str]:
    """(command, working directory) that starts DDP rank `local_rank` of the running Hydra job."""
    import __main__  # the entry point's module, as Lightning finds it

    hydra_cfg = HydraConfig.get()
    spec = getattr(__main__, "__spec__", None)
    command = [sys.executable, "-m", spec.name] if spec is not None else [sys.executable, to_absolute_path(sys.argv[0])]
    command += list(hydra_cfg.overrides.task)
    command += [
        f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',
        "hydra.mode=RUN",
        f"hydra.job.name={hydra_cfg.job.name}_ddp_rank{local_rank}",  # its own log file in the job directory
        "hydra.output_subdir=null",  # rank 0 alone writes .hydra/
    ]
    return command, get_original_cwd()


def use_job_command() -> None:
    """Make Lightning's subprocess launcher start DDP ranks with `job_command` (idempotent)."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = job_command


def launch_ranks_as_this_job(trainer: L.Trainer) -> bool:
    """`use_job_command` for a trainer that will start its DDP ranks by re-running the command under Hydra (single
    run or multirun job); nothing for any other trainer. Returns whether it applied."""
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    if not (HydraConfig.initialized() and isinstance(launcher, _SubprocessScriptLauncher)):
        return False
    use_job_command()
    return True


#: what Lightning's subprocess launcher writes into the launching process's environment
_LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def ddp_job_scope() -> Iterator[None]:
    """Run one job; afterwards destroy its process group and restore the launcher's environment variables."""
    saved = {key: os.environ.get(key) for key in _LAUNCHER_ENV}
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
