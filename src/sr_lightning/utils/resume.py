"""Which checkpoint a (re)started training run continues from: ``ckpt_path=<file>`` or ``resume=auto|<dir>|<file>``.

A requeued job is started again with the same command, so with a fixed run directory
(``hydra.run.dir=<dir> resume=auto``) it finds its own ``<dir>/checkpoints/last.ckpt`` and continues; the first
start finds nothing and starts fresh. Files that `torch.load` cannot open (a write cut short on a file system
without atomic rename, a full disk) are skipped with a warning in favour of the next newest one.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

LAST_NAME = "last.ckpt"


def _load(path: Path) -> dict[str, Any]:
    # mmap: the zip index and the pickle are read (which a truncated file fails), tensor bytes are not.
    # weights_only=True: a planted last.ckpt must not run its pickle; our checkpoints hold tensors and plain values
    # only (lightning/state.py), so a file this refuses is not one to resume from.
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except pickle.UnpicklingError as err:  # not damaged: it holds objects that would run code when unpickled
        raise UnsafeCheckpointError(
            f"{path}: holds Python objects besides tensors and plain values, which torch.load(weights_only=True) "
            "refuses; it was not written by sr_lightning and is not resumed from: remove it, or pass "
            "ckpt_path=<checkpoint> / resume=<checkpoint> of your own"
        ) from err


class UnsafeCheckpointError(ValueError):
    """A checkpoint whose pickle holds objects besides tensors and plain values (refused, never skipped)."""


def last_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Every ``last.ckpt`` under ``root`` (``root/checkpoints/last.ckpt`` and nested run folders), newest first."""
    # os.walk does not follow symlinked folders, so no cycles.
    found = [Path(dirpath) / LAST_NAME for dirpath, _, files in os.walk(root) if LAST_NAME in files]
    return sorted(found, key=lambda p: (_mtime_ns(p), str(p)), reverse=True)


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:  # removed since the walk (a concurrent cleanup): sorts last, then fails to load
        return -1


def newest_loadable(root: str | os.PathLike) -> Path | None:
    """The newest ``last.ckpt`` under ``root`` that `torch.load` opens; unreadable ones are skipped with a warning."""
    for path in last_checkpoints(root):
        try:
            _load(path)
        except UnsafeCheckpointError:  # a planted file: stop, rather than silently start from an older one
            raise
        except Exception as err:  # torch raises RuntimeError, EOFError, pickle errors... for a damaged file
            log.warning("skipping unreadable checkpoint %s (%s: %s)", path, type(err).__name__, err)
            continue
        return path
    return None


def find_resume_checkpoint(
    resume: str | os.PathLike | None, ckpt_path: str | os.PathLike | None, output_dir: str | os.PathLike
) -> Path | None:
    """The checkpoint to resume from, or None for a fresh start.

    Args:
        resume: None / "" (no resume), ``"auto"`` or True (the newest readable ``last.ckpt`` under ``output_dir``; none
            found: fresh start), an existing directory (the same search there) or a checkpoint file; any other
            value is an error.
        ckpt_path: an explicit checkpoint file; wins over ``resume``; must exist.
        output_dir: this run's directory (``paths.output_dir``).
    """
    if ckpt_path:
        path = Path(ckpt_path)
        if not path.is_file():
            raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file (fix or drop ckpt_path)")
        if resume:
            log.info("ckpt_path=%s given: resume=%s is ignored", ckpt_path, resume)
        return _checked(path)
    if not resume:
        return None
    if resume is True or str(resume) == "auto":
        path = newest_loadable(output_dir)
        if path is None:
            log.info("resume=auto: no readable %s under %s, starting fresh", LAST_NAME, output_dir)
        else:
            log.info("resume=auto: resuming from %s", path)
        return path
    target = Path(resume)
    if target.is_file():
        return _checked(target)
    if target.is_dir():
        path = newest_loadable(target)
        if path is None:
            log.warning("resume=%s: no readable %s in this folder or below it, starting fresh", resume, LAST_NAME)
        else:
            log.info("resume=%s: resuming from %s", resume, path)
        return path
    raise FileNotFoundError(f"resume={resume}: not 'auto' and no such file or folder")


def _checked(path: Path) -> Path:
    """``path`` once `torch.load(weights_only=True)` has read it; ValueError naming the file otherwise."""
    try:
        _load(path)
    except UnsafeCheckpointError:
        raise
    except Exception as err:
        raise ValueError(f"{path}: not a readable checkpoint ({type(err).__name__}: {str(err)[:200]})") from err
    return path


def wandb_run_id(ckpt: str | os.PathLike) -> str | None:
    """The W&B run id `SRModule` stored in a checkpoint (``sr_wandb_id``), so a resumed run continues that run."""
    run_id = _load(Path(ckpt)).get("sr_wandb_id")
    return str(run_id) if run_id else None
