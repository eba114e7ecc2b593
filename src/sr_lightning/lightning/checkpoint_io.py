"""Checkpoint writes that a kill cannot corrupt: temporary file, fsync, atomic rename.

Lightning's `TorchCheckpointIO` serialises into memory and writes through an fsspec transaction, which stages the
file in the system temp folder (``tempfile.mkstemp()``, mode 0600) and `shutil.move`s it onto the target at commit.
On a cluster, where ``/tmp`` is node-local and checkpoints live on a shared file system, that move is a copy into
the target: a kill during it leaves a truncated target. Nothing is fsynced either, so after a node crash the
target may be renamed but empty.

Here the checkpoint goes through `sr_lightning.utils.atomic.atomic_open` with ``fsync=True``: a hidden temporary
file beside the target (``.<name>.<pid>.<token>.tmp``: same file system, so the rename is atomic; not ending in
``.ckpt``, so neither `ModelCheckpoint` nor `sr_lightning.utils.resume` ever takes it for a checkpoint), flushed and
fsynced, then renamed onto the target, and the directory fsynced where the platform allows. A kill at any moment
leaves either the previous complete file or the new complete file under the target name; the next complete write
removes the left-over temporary files of the same target whose writer is dead, at once (only rank 0 writes
checkpoints, and the run directory lock keeps a second run out). `torch.save` writes through the helper's Python
file object, so a full disk raises the helper's "disk full ... while writing <target>" error rather than torch's
"unexpected pos".

Used through the trainer config (`conf/trainer/default.yaml`)::

    plugins: [{_target_: sr_lightning.lightning.checkpoint_io.AtomicCheckpointIO}]

Remote paths (``s3://`` and other fsspec protocols) fall back to Lightning's own writer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from sr_lightning.utils.atomic import atomic_open


def atomic_torch_save(obj: Any, target: str | os.PathLike) -> None:
    """`torch.save` ``obj`` to ``target`` so that ``target`` is always either the old or the new complete file."""
    with atomic_open(Path(target), "wb", fsync=True, keep_suffix=False, clean_stale=True) as f:
        torch.save(obj, f)


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves are atomic and durable (see the module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)  # raises for storage_options, as Lightning
            return
        atomic_torch_save(checkpoint, path)
