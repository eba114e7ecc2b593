"""`last.ckpt`, the one file a killed or pre-empted run resumes from.

`LastCheckpoint` is the only writer of ``<dirpath>/last.ckpt`` (the best-by-``val/psnr`` `ModelCheckpoint` of
`conf/callbacks/default.yaml` has ``save_last: false``; the `Preemption` callback writes the same file and tells
this callback so). It overwrites one file (no version counter, no top-k files), so ``resume=auto`` always finds
the newest state under one name. Writes go through the trainer's checkpoint IO, atomic with `AtomicCheckpointIO`.
"""

from __future__ import annotations

import os

import lightning as L
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Write ``<dirpath>/last.ckpt`` every ``every_n_train_steps`` steps, after each validation and at the end.

    Args:
        dirpath: the checkpoint folder (None: Lightning's default, ``<default_root_dir>/checkpoints`` or the
            logger's folder).
        every_n_train_steps: period in optimizer steps (0 or None: only after validation and at the end).

    After each validation the file is rewritten even when this step was already saved: the other checkpoint
    callbacks have just updated their state (best score and path), which a resumed run needs. For that the
    callback moves itself behind every other callback at setup, so its hooks run last.
    """

    def __init__(self, dirpath: _PATH | None = None, every_n_train_steps: int | None = 100) -> None:
        super().__init__(
            dirpath=dirpath,
            monitor=None,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_train_steps or 0,
            enable_version_counter=False,  # overwrite last.ckpt, never write last-v1.ckpt beside a stale one
        )

    @property
    def last_path(self) -> str:
        """The file this callback writes (known once `setup` resolved ``dirpath``)."""
        return os.path.join(self.dirpath or "", self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if trainer.callbacks and trainer.callbacks[-1] is not self:
            # a new list: Lightning is iterating the current one to call setup (removing from it would skip a callback)
            trainer.callbacks = [cb for cb in trainer.callbacks if cb is not self] + [self]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or trainer.fast_dev_run:
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):  # skips when this step is already on disk
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def saved_at_step(self, trainer: L.Trainer, filepath: _PATH) -> bool:
        """Whether this callback's file is ``filepath`` and already holds the current step."""
        return (
            self._is_mine(filepath)
            and bool(self._last_checkpoint_saved)
            and self._last_global_step_saved == trainer.global_step
        )

    def mark_saved(self, trainer: L.Trainer, filepath: _PATH) -> None:
        """Record that someone else (`Preemption`) wrote this callback's file at the current step."""
        if self._is_mine(filepath):
            self._last_global_step_saved = trainer.global_step
            self._last_checkpoint_saved = self.last_model_path = str(filepath)

    def _is_mine(self, filepath: _PATH) -> bool:
        return bool(self.dirpath) and os.path.realpath(filepath) == os.path.realpath(self.last_path)
