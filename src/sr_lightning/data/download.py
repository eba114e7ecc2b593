"""Resumable, verified downloads of the standard SR training/test archives, and their extraction.

``download`` keeps a partial transfer in ``<dest>.part`` and resumes it with an HTTP ``Range`` request
(falling back to a full transfer when the server ignores the range), retries dropped connections, checks the
size and SHA-256 (or MD5) when known, and only then renames the file to ``dest``. A file that fails the check
is moved aside to ``<dest>.bad`` (never silently reused) and a :class:`ChecksumError` is raised.

Not torchvision's ``download_url`` or pooch: neither is a dependency, and both restart an interrupted multi-GB
DIV2K / Flickr2K transfer from byte 0 instead of resuming it.

CLI: ``python -m sr_lightning.data.download div2k-x4 benchmark --root /data`` (``--list`` shows the names).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import re
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
    os.replace(path, bad)
    return bad


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
    os.replace(part, dest)
    return dest


def extract(archive: str | os.PathLike, dest_dir: str | os.PathLike, progress: bool = False) -> Path:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``dest_dir``; members may not escape it."""
    archive, dest_dir = Path(archive), Path(dest_dir).expanduser()
    dest_dir.mkdir(parents=True, exist_ok=True)
    root = dest_dir.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in tqdm(zf.infolist(), desc=f"extract {archive.name}", disable=not progress):
                _check_inside(root, info.filename)
                zf.extract(info, dest_dir)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _check_inside(root, m.name)
                if m.issym() or m.islnk():
                    _check_inside(root, os.path.join(os.path.dirname(m.name), m.linkname))
            for m in tqdm(members, desc=f"extract {archive.name}", disable=not progress):
                if hasattr(tarfile, "data_filter"):
                    tf.extract(m, dest_dir, filter="data")
                else:  # pragma: no cover - Python < 3.10.12 / 3.11.4
                    tf.extract(m, dest_dir)
    else:
        raise ValueError(f"{archive} is neither a zip nor a tar archive")
    return dest_dir


def _check_inside(root: Path, name: str) -> None:
    if os.path.isabs(name) or not (root / name).resolve().is_relative_to(root):
        raise DownloadError(f"archive member {name!r} would be extracted outside {root}")


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
    marker.write_text(a.url + "\n")
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
