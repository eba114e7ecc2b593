"""Pre-emption: on SIGTERM or the scheduler's warning signal, checkpoint at the next step and stop with exit code 143.

Flow: the signal handler only sets a flag (a Python handler runs between two bytecodes of the main thread, in the
middle of a forward pass or an all-reduce; saving or logging there could deadlock or capture half-updated state).
At the next safe point, the end of a training batch, all ranks agree (`reduce_boolean_decision(..., all=False)`:
one rank that got the signal is enough, so it does not matter which processes the scheduler signalled), write
``<dirpath>/last.ckpt`` through `trainer.save_checkpoint` (atomic with `AtomicCheckpointIO`), ask SLURM to requeue
the job when that applies, and set ``trainer.should_stop``. `sr_lightning.train` then skips the test loop and
exits with `preemption_exit_code(trainer)`: 143 = 128 + SIGTERM, what a shell reports for a process ended by
SIGTERM; non-zero so that schedulers restart it (Kubernetes ``restartPolicy: OnFailure``, torchrun, SLURM
``--requeue``) and distinct from 1 (a crash). The restarted job continues from ``last.ckpt`` with ``resume=auto``.

Signals (``signals``, names): SIGTERM (what SLURM, Kubernetes and most schedulers send before killing, after a
grace period) and SIGUSR1 (SLURM's ``--signal=USR1@<seconds>`` warning before the time limit; Lightning's default
requeue signal) and SIGUSR2 (submitit's warning signal: hydra/launcher=slurm writes ``--signal=USR2@<s>``; during fit
this callback's handler replaces submitit's, which would requeue without a checkpoint).

Requeue (``requeue: true`` and ``SLURM_JOB_ID`` set): after the checkpoint is written, rank 0 runs
``scontrol requeue <job id>`` (array jobs: ``<array job>_<task>``), as Lightning's own handler does; only for the
warning signals, never for SIGTERM, which is what ``scancel`` sends (a cancelled job must stay cancelled) and what
SLURM pre-emption sends (``PreemptMode=REQUEUE`` requeues by itself). Elsewhere requeueing is left to the scheduler.

Why not Lightning's handlers: during fit Lightning installs its own (`_SignalConnector`). Its SIGTERM handler makes
the loops raise `SIGTERMException`, a `SystemExit` with status 0 and no checkpoint. Under SLURM with
``auto_requeue`` its SIGUSR1 handler saves ``hpc_ckpt_<n>.ckpt`` from inside the handler (mid-step; under DDP while
the other ranks may wait in a collective) and requeues; on the next start under SLURM Lightning loads that file by
itself whenever no ``ckpt_path`` is given: a second resume mechanism beside ``last.ckpt``, invisible to
``resume=auto``, and none of it works outside SLURM. Two handlers for one signal would race, so this callback
replaces Lightning's handlers for its signals once Lightning has installed them (right before the sanity check:
ours go in at the sanity check or at train start, whichever comes first) and puts the previous handlers back at
teardown. A signal before that point meets Lightning's handlers.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

from sr_lightning.lightning.callbacks.checkpoints import LastCheckpoint

log = logging.getLogger(__name__)

# 128 + SIGTERM (15): a shell's exit status for a process ended by SIGTERM.
PREEMPTION_EXIT_CODE = 128 + signal.SIGTERM.value


def _signal_number(name: str) -> signal.Signals:
    key = name.upper() if name.upper().startswith("SIG") else "SIG" + name.upper()
    try:
        return signal.Signals[key]
    except KeyError:
        raise ValueError(f"unknown signal {name!r} in callbacks.preemption.signals (e.g. SIGTERM, SIGUSR1)") from None


def slurm_job_id() -> str | None:
    """The id `scontrol requeue` expects: ``<array job>_<task>`` for array jobs, else ``SLURM_JOB_ID``."""
    array_id = os.environ.get("SLURM_ARRAY_JOB_ID")
    job_id = f"{array_id}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_id else os.environ.get("SLURM_JOB_ID")
    return job_id if job_id and re.fullmatch(r"[0-9_]+", job_id) else None


class Preemption(Checkpoint):
    """Checkpoint and stop cleanly when the scheduler signals (see the module docstring).

    Args:
        dirpath: where ``last.ckpt`` goes (None: the folder of the `LastCheckpoint` callback, else
            ``<default_root_dir>/checkpoints``).
        signals: names of the signals that request a stop.
        requeue: under SLURM, requeue the job after checkpointing on a warning signal (not on SIGTERM).
        exit_code: what `preemption_exit_code` returns after a pre-empted fit (143 = 128 + SIGTERM).

    After the fit, ``preempted`` tells whether it stopped for a signal, ``signal_name`` which one, and
    ``stopped_at_step`` the global step saved in ``checkpoint_path``.

    It is a `Checkpoint` callback, so Lightning runs it after the other callbacks (it moves checkpoint callbacks to the
    end of the list): the checkpoint it writes at a batch end already holds that step's EMA update.
    """

    def __init__(
        self,
        dirpath: str | os.PathLike | None = None,
        signals: Sequence[str] = ("SIGTERM", "SIGUSR1", "SIGUSR2"),
        requeue: bool = True,
        exit_code: int = PREEMPTION_EXIT_CODE,
    ) -> None:
        self.dirpath = dirpath
        self.signals = [_signal_number(name) for name in signals]
        self.requeue = requeue
        self.exit_code = int(exit_code)
        self.preempted = False
        self.signal_name: str | None = None
        self.stopped_at_step: int | None = None
        self.checkpoint_path: Path | None = None
        self._received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    @property
    def signal_received(self) -> str | None:
        """The name of the first handled signal this process received, if any (set by the handler itself)."""
        return self._received.name if self._received is not None else None

    # -- handlers ---------------------------------------------------------------------------------------------
    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # No logging here: the handler may interrupt a logging call holding its lock.
        if self._received is None:
            self._received = signal.Signals(signum)

    def _install(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return  # already installed; signal.signal only works in the main thread
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            # Lightning's teardown may already have put its originals back; only undo our own handler.
            # None: the previous handler was not set from Python and cannot be reinstated; the default is closest.
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":  # a fresh record for every fit
            self.preempted, self.signal_name, self.stopped_at_step, self.checkpoint_path = False, None, None, None
            self._received = None

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()  # Lightning calls no teardown hook after an exception

    # -- the safe point ---------------------------------------------------------------------------------------
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._requested(trainer):
            self._stop(trainer)
            # Lightning validates when should_stop is set (for early stopping); a pre-empted run has no time for
            # it, and the resumed run skips this step's validation anyway (checkpoint saved at batch end).
            if hasattr(trainer.fit_loop.epoch_loop, "_skip_next_val"):
                trainer.fit_loop.epoch_loop._skip_next_val = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A signal during the last validation or after the last batch: still leave with a checkpoint and the code.
        if self._requested(trainer):
            self._stop(trainer)

    def _requested(self, trainer: L.Trainer) -> bool:
        """Whether any rank got a signal (a collective under DDP: every rank calls it at the same point)."""
        if self.preempted:  # the same on every rank
            return False
        requested = self._received is not None
        if trainer.world_size > 1:
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        return requested

    def _stop(self, trainer: L.Trainer) -> None:
        received = self._received  # None on ranks that only learnt of the signal from another rank
        self.signal_name = received.name if received is not None else "signal on another rank"
        path = self._checkpoint_path(trainer)
        last_cbs = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, LastCheckpoint)]
        if not any(cb.saved_at_step(trainer, path) for cb in last_cbs):
            trainer.save_checkpoint(path)
            for cb in last_cbs:
                cb.mark_saved(trainer, path)
        self.preempted = True
        self.stopped_at_step = trainer.global_step
        self.checkpoint_path = path
        log.warning("%s: saved %s at step %d, stopping", self.signal_name, path, trainer.global_step)
        if self.requeue and received is not None and received != signal.SIGTERM and trainer.is_global_zero:
            self._requeue_slurm()
        # Pre-emption overrides min_steps / min_epochs, which would otherwise keep the loop going.
        trainer.fit_loop.epoch_loop.min_steps = None
        trainer.fit_loop.min_epochs = None
        trainer.should_stop = True

    def _checkpoint_path(self, trainer: L.Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath) / "last.ckpt"
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, LastCheckpoint) and cb.dirpath:
                return Path(cb.last_path)
        return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"

    @staticmethod
    def _requeue_slurm() -> None:
        job_id = slurm_job_id()
        if job_id is None:
            return  # not a SLURM job: the exit code tells the scheduler
        try:
            proc = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            log.warning("could not requeue SLURM job %s: %s", job_id, err)
            return
        if proc.returncode == 0:
            log.warning("requeued SLURM job %s", job_id)
        else:
            log.warning("scontrol requeue %s failed (%d): %s", job_id, proc.returncode, proc.stderr.strip())


def preemption_exit_code(trainer: L.Trainer) -> int | None:
    """The exit code to leave with after `trainer.fit` when a `Preemption` callback stopped it, else None."""
    for cb in trainer.callbacks:
        if isinstance(cb, Preemption) and cb.preempted:
            return cb.exit_code
    return None
