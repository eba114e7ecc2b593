"""The one atomic writer: every file the package writes goes to a hidden temporary file beside the target, which is
then renamed over the target (`os.replace`, atomic on one file system). A kill or an error at any moment leaves
either the previous complete file or the new complete file under the target's name, never half a file.

Temporary files share one pattern, ``.<target name>.<pid>.<8 hex>.tmp[<target suffix>]``:
- hidden, and ending in ``.tmp`` (checkpoints drop the kept suffix), so neither Lightning's `ModelCheckpoint`
  (``last*.ckpt``) nor `sr_lightning.utils.resume` (files named exactly ``last.ckpt``) takes one for a checkpoint;
- with the target's suffix kept by default, because writers such as PIL or onnx pick the format from it;
- with the writer's PID, so a left-over of a killed writer can be told from a write in progress
  (`is_temp_file`, `remove_stale_temps`).

A full disk (``ENOSPC``), a full quota (``EDQUOT``) or the file-size limit (``EFBIG``) anywhere in the chain of the
error raises an `OSError` with the same errno whose message says so and names the target, chained from the original
error, so that it is the last line of the traceback. `torch.save` to a *path* hides the errno (its C++ writer
raises "unexpected pos"): write checkpoints through `atomic_open`, whose Python file object surfaces it.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "STALE_AFTER_S",
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "full_disk_errno",
    "is_temp_file",
    "move_into_place",
    "raise_if_disk_full",
    "remove_stale_temps",
    "temp_path",
]

# A temporary file whose writer is not a process of this machine is taken as left over once it has not changed for
# this long: on a shared file system its PID may belong to a live writer on another machine.
STALE_AFTER_S = 300.0

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<token>[0-9a-f]{8})\.tmp(?P<suffix>\.[^.]*)?$")

# errno -> (what is full, what to do); EDQUOT is missing on Windows
_FULL = {
    errno.ENOSPC: ("disk full", "free space on that file system and run again"),
    errno.EFBIG: ("file-size limit reached", "raise the limit (ulimit -f) or write to a file system allowing it"),
}
if hasattr(errno, "EDQUOT"):
    _FULL[errno.EDQUOT] = ("disk quota full", "free space within your quota (or have it raised) and run again")


def temp_path(target: str | os.PathLike, *, keep_suffix: bool = True) -> Path:
    """A fresh temporary path beside ``target`` in the shared pattern (see the module docstring)."""
    target = Path(target)
    suffix = target.suffix if keep_suffix else ""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")


def is_temp_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like one of our temporary files (a write in progress or a left-over)."""
    return _TEMP_RE.match(Path(path).name) is not None


def _temp_of(temp_name: str, target_name: str) -> bool:
    """Whether a temporary file named ``temp_name`` was written for ``target_name``; the name before this pattern
    (``.<stem>.<pid>.<token>.tmp<suffix>``) is recognised too, so its left-overs are cleaned as well."""
    m = _TEMP_RE.match(temp_name)
    if m is None:
        return False
    return target_name in (m["name"], m["name"] + (m["suffix"] or ""))


def _writer_alive(temp_name: str) -> bool:
    m = _TEMP_RE.match(temp_name)
    pid = int(m["pid"]) if m else 0
    if pid <= 0:
        return False
    if pid == os.getpid():  # a write of this process (another thread) may be in progress
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by another user
        return True
    return True


def remove_stale_temps(target_or_folder: str | os.PathLike, *, min_age_s: float = STALE_AFTER_S) -> int:
    """Remove left-over temporary files (and staging folders) of a target file, or of every target in a folder;
    returns how many were removed.

    A temporary file is left over when its writer's PID is not a live process here and it has not changed for
    ``min_age_s`` seconds (0: at once; callers that know no other machine writes there may pass 0). Writes in
    progress of this process or of any live process are never touched."""
    path = Path(target_or_folder)
    folder, target_name = (path, None) if path.is_dir() else (path.parent, path.name)
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no folder yet: nothing left over
        return 0
    removed = 0
    now = time.time()
    for entry in entries:
        if not is_temp_file(entry.name) or (target_name is not None and not _temp_of(entry.name, target_name)):
            continue
        if _writer_alive(entry.name):
            continue
        try:
            if min_age_s > 0 and now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:  # removed by another cleaner meanwhile
            continue
        removed += 1
    return removed


def full_disk_errno(error: BaseException) -> int | None:
    """The errno of the first ENOSPC / EDQUOT / EFBIG `OSError` in ``error``'s chain (``__cause__`` and
    ``__context__``), else None. torch's zip writer, for one, raises a RuntimeError over the OSError of the file."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo:
        err = todo.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _FULL:
            return err.errno
        todo += [e for e in (err.__context__, err.__cause__) if e is not None]
    return None


def raise_if_disk_full(error: BaseException, target: str | os.PathLike, kept: str | None = None) -> None:
    """Raise the disk-full `OSError` for ``target`` (from ``error``) if ``error`` comes from a full disk, quota or
    file-size limit; else return. ``kept`` says what is left (default: whether ``target``'s previous file is)."""
    code = full_disk_errno(error)
    if code is None:
        return
    what, todo = _FULL[code]
    if kept is None:
        kept = "the previous file is intact" if os.path.lexists(target) else "no partial file was left"
    raise OSError(code, f"{what} ({os.strerror(code)}) while writing {target}; {kept}; {todo}") from error


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


@contextmanager
def atomic_path(
    path: str | os.PathLike, *, fsync: bool = False, keep_suffix: bool = True, clean_stale: bool = False
) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for the caller to write; on success it replaces ``path``, on failure
    it is removed and ``path`` is left as it was (a full disk raises the disk-full `OSError`).

    Args:
        fsync: flush the file and the directory entry to the disk before returning (checkpoints, weights: files
            that must survive a crash of the machine); outputs that can be made again skip it.
        keep_suffix: end the temporary name with ``path``'s suffix, for writers that pick the format from it.
            Checkpoints turn it off, so that no temporary file is named ``*.ckpt``.
        clean_stale: afterwards remove left-over temporary files of ``path`` of dead writers at once (writers
            that alone write ``path``, such as a run's checkpoints; see `remove_stale_temps`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target, keep_suffix=keep_suffix)
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        raise_if_disk_full(err, target)
        raise
    if fsync:
        _fsync_dir(target.parent)
    if clean_stale:
        remove_stale_temps(target, min_age_s=0)


@contextmanager
def atomic_open(
    path: str | os.PathLike,
    mode: str = "wb",
    *,
    fsync: bool = False,
    keep_suffix: bool = True,
    clean_stale: bool = False,
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """`atomic_path`, yielding the temporary file opened for writing (``mode`` "wb" or "w"; text defaults to
    UTF-8). The file is created with mode 0o666 less the umask, as `open` would."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a new file: mode must be 'w' or 'wb', not {mode!r}")
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with atomic_path(path, fsync=fsync, keep_suffix=keep_suffix, clean_stale=clean_stale) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            yield f


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see `atomic_path`); returns ``path``."""
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = False, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see `atomic_path`); returns ``path``."""
    with atomic_open(path, "w", fsync=fsync, encoding=encoding) as f:
        f.write(text)
    return Path(path)


def move_into_place(src: str | os.PathLike, target: str | os.PathLike, *, fsync: bool = False) -> Path:
    """Rename a complete file (or folder) ``src`` over ``target`` on the same file system, e.g. a verified
    download; ``fsync`` also persists the data and the rename. Returns ``target``."""
    src, target = Path(src), Path(target)
    if fsync and src.is_file():
        _fsync_file(src)
    os.replace(src, target)
    if fsync:
        _fsync_dir(target.parent)
    return target
