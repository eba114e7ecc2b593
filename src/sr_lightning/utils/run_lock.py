"""One training run at a time in a run directory.

Two `train` processes in one ``hydra.run.dir`` (a job requeued while the old one still runs, a command pasted twice)
would run side by side: ``train.log`` would mix both, and ``last.ckpt`` and ``weights/`` would hold whichever
finished last. So the run holds an exclusive ``flock`` on ``<run dir>/.sr_lightning.lock`` (the holder's PID and
host written in it), and a second run in that directory stops at once with a one-line error naming the directory
and the holder.

- The kernel releases a ``flock`` when its process dies, SIGKILL and OOM included, so a lock file left by a killed
  run never blocks ``resume=auto``. Processes forked while it is held (DataLoader workers) close their copy of the
  descriptor at once (`os.register_at_fork`), so that workers outliving a killed run do not keep its lock. (On NFS, a
  crashed client's lock lasts until the server's lease expires.)
- Only the launching process (global rank 0) takes it: the DDP ranks that Lightning starts by running the entry
  point again in the same directory (``LOCAL_RANK`` set, see `sr_lightning.lightning.hydra_ddp`), the other nodes
  of a multi-node run (``NODE_RANK``) and the tasks of ``srun``/``torchrun``/MPI (``SLURM_PROCID``, ``RANK``, ...)
  belong to the run that holds it.
- The file descriptor is not inherited by processes the run starts (Python opens files non-inheritable).
- Holding it again in the same process (an entry point inside the `RunDirLock` Hydra callback) nests.

Where to take it: `run_dir_lock` around the run in the entry point (`sr_lightning.train`). Hydra has already
written ``.hydra/config.yaml`` and ``overrides.yaml`` into the directory when the entry point starts; the
`RunDirLock` callback (``hydra.callbacks.run_lock``) takes the lock before that, so a refused run leaves those of
the running one intact.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

__all__ = ["LOCK_NAME", "RANK_VARIABLES", "RunDirBusy", "RunDirLock", "is_launching_process", "run_dir_lock"]

LOCK_NAME = ".sr_lightning.lock"

#: set to a non-zero rank in every process of a run but the one that launched it: Lightning's DDP subprocesses
#: (LOCAL_RANK, NODE_RANK), torchrun (RANK, GROUP_RANK), SLURM srun, Open MPI / MPICH / Intel MPI, LSF jsrun
RANK_VARIABLES = (
    "LOCAL_RANK",
    "NODE_RANK",
    "RANK",
    "GROUP_RANK",
    "SLURM_PROCID",
    "OMPI_COMM_WORLD_RANK",
    "PMI_RANK",
    "JSM_NAMESPACE_RANK",
)


class RunDirBusy(SystemExit):
    """Another process holds the run directory. A `SystemExit` (status 1, its message printed without a
    traceback), so that Hydra, which turns any `Exception` of a job into a traceback, lets it through."""

    def __init__(self, run_dir: Path, holder: str | None) -> None:
        self.run_dir = run_dir
        self.holder = holder
        who = f"PID {holder}" if holder else "a process whose PID is not written yet"
        super().__init__(
            f"error: another training run ({who}) is using the run directory {run_dir}; "
            "wait for it to end (or stop it), or give this run another hydra.run.dir"
        )


@dataclass
class _Held:
    fd: int
    lock_file: Path
    depth: int = 1


_held: dict[Path, _Held] = {}


def is_launching_process(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process is global rank 0 of its run (no rank variable says otherwise)."""
    env = os.environ if env is None else env
    return all(env.get(name, "0").strip() in ("", "0") for name in RANK_VARIABLES)


def _holder(fd: int) -> str | None:
    """``"<pid> on <host>"`` as written by the holder, None if it has not written it yet."""
    try:
        text = os.pread(fd, 256, 0).decode(errors="replace").split()
    except OSError:
        return None
    return f"{text[0]} on {text[1]}" if len(text) >= 2 else (text[0] if text else None)


def _acquire(run_dir: Path) -> _Held:
    lock_file = run_dir / LOCK_NAME
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunDirBusy(run_dir, holder) from None
        except BaseException:
            os.close(fd)
            raise
        # A holder removes the file as it releases: if it did so after we opened it, we hold a lock on a file that
        # is no longer there (and a third process could lock a new one); open the file now there and try again.
        try:
            on_disk = os.stat(lock_file)
        except FileNotFoundError:
            on_disk = None
        mine = os.fstat(fd)
        if on_disk is not None and (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino):
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    _forget_in_children(fd)
    return _Held(fd, lock_file)


_HELD_FDS: set[int] = set()
_fork_hook_registered = False


def _close_held_in_child() -> None:
    # close, never LOCK_UN: unlocking here would release the parent's lock (one open file description)
    for fd in _HELD_FDS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_FDS.clear()


def _forget_in_children(fd: int) -> None:
    """Forked children (DataLoader workers) close ``fd`` at once: a flock lasts while any copy is open."""
    global _fork_hook_registered
    if not _fork_hook_registered:  # registered on first use, not at import
        os.register_at_fork(after_in_child=_close_held_in_child)
        _fork_hook_registered = True
    _HELD_FDS.add(fd)


def _release(held: _Held) -> None:
    # Removed while still locked, so nobody can lock the old file after we let go (see `_acquire`).
    with contextlib.suppress(FileNotFoundError):
        held.lock_file.unlink()
    fcntl.flock(held.fd, fcntl.LOCK_UN)
    _HELD_FDS.discard(held.fd)
    os.close(held.fd)


@contextmanager
def run_dir_lock(run_dir: str | os.PathLike) -> Iterator[bool]:
    """Hold ``run_dir`` (created if missing) for the duration; yields whether this process holds it (False in the
    processes of a run that its launching process holds it for, see `is_launching_process`).

    Raises:
        RunDirBusy: another process holds it.
    """
    if not is_launching_process():
        yield False
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    held = _held.get(key)
    if held is not None:
        held.depth += 1
    else:
        held = _held[key] = _acquire(run_dir)
    try:
        yield True
    finally:
        held.depth -= 1
        if held.depth == 0:
            del _held[key]
            _release(held)


class RunDirLock(Callback):
    """Hydra callback (``hydra.callbacks.run_lock``): holds a single run's directory from before Hydra writes into
    it (``.hydra/``) to the end of the run, and each multirun job's directory for the job (Hydra calls no hook
    before it writes a job's ``.hydra/``; those directories are new for each sweep)."""

    def __init__(self) -> None:
        self._locks: list[contextlib.ExitStack] = []

    def _enter(self, run_dir: str) -> None:
        stack = contextlib.ExitStack()
        stack.enter_context(run_dir_lock(os.path.abspath(run_dir)))  # as Hydra makes runtime.output_dir
        self._locks.append(stack)

    def _exit(self) -> None:
        if self._locks:
            self._locks.pop().close()

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # as run_job does first: ${hydra:...} in hydra.run.dir resolves
        self._enter(str(config.hydra.run.dir))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._exit()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.get("mode") == RunMode.MULTIRUN:  # a single run holds it since on_run_start
            self._enter(str(config.hydra.runtime.output_dir))

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.get("mode") == RunMode.MULTIRUN:
            self._exit()
