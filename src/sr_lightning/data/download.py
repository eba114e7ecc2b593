"""Resumable, verified downloads of the standard SR training/test archives, and their extraction.

``download`` keeps a partial transfer in ``<dest>.part`` and resumes it with an HTTP ``Range`` request
(falling back to a full transfer when the server ignores the range), retries dropped connections, checks the
size and SHA-256 (or MD5) when known, and only then renames the file to ``dest``. A file that fails the check
is moved aside to ``<dest>.bad`` (never silently reused) and a :class:`ChecksumError` is raised. A full disk stops
the transfer at once (no retries) with the helper's "disk full ... while writing" error; the bytes so far stay in
``<dest>.part`` for the next run to resume.

``extract`` is all or nothing: the archive is extracted into a hidden staging folder inside the destination, and
its files are moved into place only once every member is out; members or links that would land outside the
destination are refused before anything is written (see :func:`extract`).

Not torchvision's ``download_url`` or pooch: neither is a dependency, and both restart an interrupted multi-GB
DIV2K / Flickr2K transfer from byte 0 instead of resuming it.

CLI: ``python -m sr_lightning.data.download div2k-x4 benchmark --root /data`` (``--list`` shows the names).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import logging
import os
import re
import shutil
import sys
import tarfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from tqdm import tqdm

from sr_lightning.data.archives import ARCHIVES, GROUPS, Archive
from sr_lightning.utils.atomic import (
    atomic_write_text,
    full_disk_errno,
    move_into_place,
    raise_if_disk_full,
    remove_stale_temps,
    temp_path,
)

__all__ = ["ARCHIVES", "GROUPS", "Archive", "ChecksumError", "DownloadError", "download", "extract", "fetch"]

log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A download that could not be completed."""


class ChecksumError(DownloadError):
    """A downloaded file whose size or hash differs from the expected one."""


class _Incomplete(DownloadError):
    """The connection ended before all the bytes arrived (retriable)."""


def file_digests(path: str | os.PathLike, algorithms: Sequence[str] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file, reading it once."""
    hashes = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            for h in hashes.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashes.items()}


def verify(path: str | os.PathLike, size: int | None = None, sha256: str | None = None, md5: str | None = None) -> None:
    """Raise :class:`ChecksumError` if the file's size or SHA-256 / MD5 differs from the given ones."""
    actual = os.path.getsize(path)
    if size is not None and actual != size:
        raise ChecksumError(f"{path}: size {actual} bytes, expected {size}")
    wanted = {k: v.lower() for k, v in (("sha256", sha256), ("md5", md5)) if v}
    if wanted:
        got = file_digests(path, list(wanted))
        for algo, value in wanted.items():
            if got[algo] != value:
                raise ChecksumError(f"{path}: {algo} {got[algo]}, expected {value}")


def _set_aside(path: Path, dest: Path) -> Path:
    bad = dest.with_name(dest.name + ".bad")
    n = 1
    while bad.exists():
        bad = dest.with_name(f"{dest.name}.bad{n}")
        n += 1
    return move_into_place(path, bad)


def _transfer(url: str, part: Path, size: int | None, progress: bool, timeout: float, chunk: int) -> None:
    """Append the missing bytes of ``url`` to ``part`` (Range request from its current size)."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return
    headers = {"User-Agent": "sr-lightning-download"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as e:
        # 416: nothing left to send, the part file is complete (or wrong: verify() will say).
        if e.code == 416 and offset:
            return
        raise
    with resp:
        mode = "wb"
        if offset and resp.status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if m is None or int(m.group(1)) != offset:
                raise DownloadError(f"{url}: server answered range {resp.headers.get('Content-Range')!r}")
            mode = "ab"
        else:
            offset = 0  # server ignored the Range header: start over
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else size
        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
            ) as bar,
        ):
            while data := resp.read(chunk):
                f.write(data)
                bar.update(len(data))
    got = part.stat().st_size
    if total is not None and got < total:
        raise _Incomplete(f"{url}: connection closed after {got} of {total} bytes")


def _retriable(e: BaseException) -> bool:
    if isinstance(e, HTTPError):
        return e.code >= 500 or e.code in (408, 429)
    if full_disk_errno(e) is not None:  # waiting does not free space
        return False
    return isinstance(e, OSError | http.client.HTTPException | _Incomplete)


def download(
    url: str,
    dest: str | os.PathLike,
    size: int | None = None,
    sha256: str | None = None,
    resume: bool = True,
    progress: bool = True,
    *,
    md5: str | None = None,
    retries: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it, and return ``dest``.

    An existing ``dest`` that passes the checks is returned without network access; one that fails them is
    moved aside to ``dest.bad`` and downloaded again. A dropped connection is retried ``retries`` times,
    resuming where it stopped (``resume=False`` restarts from zero instead).
    """
    dest = Path(dest).expanduser()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        try:
            verify(dest, size, sha256, md5)
            return dest
        except ChecksumError as e:
            log.warning("%s; moved aside to %s, downloading again", e, _set_aside(dest, dest))
    part = dest.with_name(dest.name + ".part")
    if not resume:
        part.unlink(missing_ok=True)
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, size, progress, timeout, chunk_size)
            break
        except Exception as e:
            raise_if_disk_full(e, part, kept="the bytes so far are kept there and the next run resumes from them")
            if not _retriable(e) or attempt == retries:
                raise DownloadError(f"download of {url} failed: {e} (partial file kept: {part})") from e
            log.warning("download of %s interrupted (%s); retry %d/%d", url, e, attempt + 1, retries)
            if not resume:
                part.unlink(missing_ok=True)
            time.sleep(retry_wait * 2**attempt)
    try:
        verify(part, size, sha256, md5)
    except ChecksumError as e:
        bad = _set_aside(part, dest)
        raise ChecksumError(f"{e} (downloaded from {url}; bad file kept aside as {bad})") from None
    return move_into_place(part, dest)  # the verified .part is the complete file: rename it, no copy


def extract(archive: str | os.PathLike, dest_dir: str | os.PathLike, progress: bool = False) -> Path:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``dest_dir``, all or nothing; returns ``dest_dir``.

    Every member name and link target is checked before anything is written: one that would land outside
    ``dest_dir`` (absolute, ``..``, a link pointing out), or a device or fifo, refuses the whole archive. The members
    are extracted into a hidden staging folder inside ``dest_dir`` (same file system) and moved into place by
    renames only once all are out; a file of the same name already there is replaced. Any failure (damaged archive,
    full disk, interrupt) removes the staging folder and puts back what the move had replaced, so ``dest_dir`` is
    left as it was and nothing of the archive remains.
    """
    archive, dest_dir = Path(archive), Path(dest_dir).expanduser()
    if zipfile.is_zipfile(archive):
        extract_into = _extract_zip
    elif tarfile.is_tarfile(archive):
        extract_into = _extract_tar
    else:
        raise ValueError(f"{archive} is neither a zip nor a tar archive")
    created = _missing_folders(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest_dir / archive.name)  # staging folders of an extraction killed earlier
    staging = temp_path(dest_dir / archive.name, keep_suffix=False)
    staging.mkdir()
    replaced = temp_path(dest_dir / archive.name, keep_suffix=False)  # files the move replaces, until it succeeds
    try:
        extract_into(archive, staging, dest_dir, progress)
        _move_into(staging, dest_dir, replaced)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # deepest first; only while empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise_if_disk_full(err, dest_dir, kept=f"nothing of {archive.name} was left there")
        raise
    finally:
        shutil.rmtree(replaced, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)  # the folders whose contents were merged into existing ones
    return dest_dir


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _check_inside(root: Path, name: str, archive: Path, dest_dir: Path, what: str = "member") -> None:
    if os.path.isabs(name) or not (root / name).resolve().is_relative_to(root.resolve()):
        raise DownloadError(
            f"{archive}: {what} {name!r} would land outside {dest_dir}; nothing was extracted "
            "(a damaged or hostile archive: do not use it)"
        )


def _extract_zip(archive: Path, staging: Path, dest_dir: Path, progress: bool) -> None:
    # zipfile writes links as plain files holding the target's name, so only the member names need checking
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _check_inside(staging, info.filename, archive, dest_dir)
        for info in tqdm(infos, desc=f"extract {archive.name}", disable=not progress):
            zf.extract(info, staging)


def _extract_tar(archive: Path, staging: Path, dest_dir: Path, progress: bool) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for m in members:
            _check_inside(staging, m.name, archive, dest_dir)
            if m.issym():  # relative to the link's folder
                target = os.path.join(os.path.dirname(m.name), m.linkname)
                _check_inside(staging, target, archive, dest_dir, f"link {m.name!r} ->")
            elif m.islnk():  # a hard link names another member, relative to the archive root
                _check_inside(staging, m.linkname, archive, dest_dir, f"hard link {m.name!r} ->")
            elif not (m.isfile() or m.isdir()):
                raise DownloadError(f"{archive}: member {m.name!r} is a device or fifo; nothing was extracted")
        for m in tqdm(members, desc=f"extract {archive.name}", disable=not progress):
            if hasattr(tarfile, "data_filter"):  # checks again as it writes, through links already extracted
                try:
                    tf.extract(m, staging, filter="data")
                except tarfile.FilterError as err:
                    raise DownloadError(f"{archive}: {err}; nothing was extracted") from err
            else:  # pragma: no cover - Python < 3.10.12 / 3.11.4
                tf.extract(m, staging)


def _plan_moves(staged: Path, dest: Path) -> list[tuple[Path, Path]]:
    """The renames that put the tree under ``staged`` into ``dest``: a whole folder where ``dest`` has none of that
    name, else its entries one by one (a file or link replaces one of the same name). A folder against a file or
    link of the same name, or the reverse, raises before anything moves (a folder is never merged through a link)."""
    moves: list[tuple[Path, Path]] = []
    for entry in sorted(staged.iterdir()):
        target = dest / entry.name
        entry_dir = entry.is_dir() and not entry.is_symlink()
        target_dir = target.is_dir() and not target.is_symlink()
        if not os.path.lexists(target) or not (entry_dir or target_dir):
            moves.append((entry, target))
        elif entry_dir and target_dir:
            moves += _plan_moves(entry, target)
        else:
            kind = "a folder" if target_dir else "a link" if target.is_symlink() else "a file"
            raise DownloadError(
                f"cannot extract into {target}: it is {kind} where the archive has "
                f"{'a folder' if entry_dir else 'a file'}; move it away and run again (nothing was extracted)"
            )
    return moves


def _move_into(staging: Path, dest_dir: Path, replaced: Path) -> None:
    """Carry out `_plan_moves`; on failure undo the renames done, putting back the files they replaced."""
    done: list[tuple[Path, Path, Path | None]] = []  # (staged, target, where the replaced file went)
    try:
        for i, (staged, target) in enumerate(_plan_moves(staging, dest_dir)):
            old = None
            if os.path.lexists(target):
                replaced.mkdir(exist_ok=True)
                old = move_into_place(target, replaced / str(i))
            done.append((staged, target, old))
            move_into_place(staged, target)
    except BaseException:
        for staged, target, old in reversed(done):
            if not os.path.lexists(staged) and os.path.lexists(target):  # moved: take it out again
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)
            if old is not None:
                move_into_place(old, target)
        raise


def fetch(
    name: str,
    root: str | os.PathLike,
    extract_archive: bool = True,
    keep_archive: bool = True,
    progress: bool = True,
) -> Path:
    """Download (to ``root/downloads``) and extract a known archive from :data:`ARCHIVES` under ``root``."""
    if name not in ARCHIVES:
        raise KeyError(f"unknown archive {name!r}; known: {', '.join(sorted(ARCHIVES))}")
    a = ARCHIVES[name]
    root = Path(root).expanduser()
    target = root / a.extract_to
    marker = target / f".{a.filename}.extracted"
    if extract_archive and marker.exists():
        log.info("%s already extracted in %s", a.filename, target)
        return target
    path = download(a.url, root / "downloads" / a.filename, a.size, a.sha256, progress=progress, md5=a.md5)
    if not extract_archive:
        return path
    extract(path, target, progress=progress)
    atomic_write_text(marker, a.url + "\n")
    if not keep_archive:
        path.unlink()
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m sr_lightning.data.download", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="archive or group names (see --list)")
    parser.add_argument("--root", default=".", help="data root, e.g. the value of paths.data_dir")
    parser.add_argument("--list", action="store_true", help="list the known archives and groups")
    parser.add_argument("--no-extract", action="store_true", help="only download")
    parser.add_argument("--remove-archive", action="store_true", help="delete each archive once extracted")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.list or not args.names:
        for key, a in ARCHIVES.items():
            size = f"{a.size / 2**20:,.0f} MiB" if a.size else "size unknown"
            print(f"{key:20s} {a.url}  ({size}) -> <root>/{a.extract_to}")
        for key, members in GROUPS.items():
            print(f"{key:20s} = {' + '.join(members)}")
        return 0
    names: list[str] = []
    for n in args.names:
        for member in GROUPS.get(n, [n]):
            if member not in ARCHIVES:
                parser.error(f"unknown archive {n!r} (see --list)")
            if member not in names:
                names.append(member)
    for n in names:
        out = fetch(n, args.root, not args.no_extract, not args.remove_archive, progress=not args.quiet)
        print(f"{n}: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
