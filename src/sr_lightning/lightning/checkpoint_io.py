"""Checkpoint writes that a kill cannot corrupt: temporary file, fsync, atomic rename.

Lightning's `TorchCheckpointIO` serialises into memory and writes through an fsspec transaction, which stages the
file in the system temp folder (``tempfile.mkstemp()``, mode 0600) and `shutil.move`s it onto the target at commit.
On a cluster, where ``/tmp`` is node-local and checkpoints live on a shared file system, that move is a copy into
the target: a kill during it leaves a truncated target. Nothing is fsynced either, so after a node crash the
target may be renamed but empty.

Here the checkpoint is written to a hidden temporary file beside the target (``.<name>.<pid>.<token>.tmp``: same
file system, so the rename is atomic; not ending in ``.ckpt``, so neither `ModelCheckpoint` nor
`sr_lightning.utils.resume` ever takes it for a checkpoint), flushed and fsynced, then `os.replace`d onto the
target, and the directory is fsynced where the platform allows. A kill at any moment leaves either the previous
complete file or the new complete file under the target name; the next complete write removes left-over
temporary files of the same target.

Used through the trainer config (`conf/trainer/default.yaml`)::

    plugins: [{_target_: sr_lightning.lightning.checkpoint_io.AtomicCheckpointIO}]

Remote paths (``s3://`` and other fsspec protocols) fall back to Lightning's own writer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)


def temp_pattern(target: Path) -> str:
    """Glob pattern of the temporary files `AtomicCheckpointIO` writes before renaming onto ``target``."""
    return f".{target.name}.*.tmp"


def _fsync_dir(directory: Path) -> None:
    """Persist a rename: fsync the directory entry (POSIX); Windows cannot open directories, so skip there."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some network file systems refuse fsync on directories; the data itself is synced
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, target: str | os.PathLike) -> None:
    """`torch.save` ``obj`` to ``target`` so that ``target`` is always either the old or the new complete file."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # os.open with 0o666 lets the umask decide the permissions, as for a plain open() (mkstemp would force 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)
    # Left-overs of writes killed before the rename (SIGKILL, OOM): same target, so superseded now.
    for stale in target.parent.glob(temp_pattern(target)):
        with contextlib.suppress(OSError):
            stale.unlink()
            log.debug("removed stale temporary checkpoint %s", stale)


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves are atomic and durable (see the module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)  # raises for storage_options, as Lightning
            return
        atomic_torch_save(checkpoint, path)
