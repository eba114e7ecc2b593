"""Full-decode check of image files, in parallel, with a per-folder cache of the good results.

A truncated PNG opens fine (PIL reads only the header) and fails when a DataLoader worker decodes it, hours into a
run. So every file is decoded once, up front, with :func:`~sr_lightning.data.io.load_image` (the same rules as
training: a file passes only if it decodes completely, to the size in its header, in a mode the package converts).

Speed: the files are decoded in a thread pool; PIL releases the GIL while it decodes, so the threads run in
parallel. Results are cached per folder in a small JSON file under :func:`scan_cache_dir`, one entry per good file
keyed by its name, size and mtime (ns): a later run only stats the files, and a changed or replaced file is checked
again. Bad files are never cached (they are few, and their message then always names the path as given now).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import PIL
from tqdm import tqdm

from sr_lightning.data.io import BadImageError, load_image
from sr_lightning.utils.atomic import atomic_write_text

__all__ = ["FileCheck", "check_image", "default_workers", "scan_cache_dir", "scan_images"]

log = logging.getLogger(__name__)

# Bump when the check itself changes (what load_image accepts), so older cached verdicts are not trusted.
SCAN_VERSION = 1
_CACHE_KEY = f"{SCAN_VERSION}/pillow-{PIL.__version__}"
# Below this many files to decode no progress bar is drawn (a blink, not a wait).
_PROGRESS_MIN_FILES = 64


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one file: its decoded (width, height) when usable, else the reason (starting with the path)."""

    path: Path
    size: tuple[int, int] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def scan_cache_dir() -> Path:
    """``$SR_CACHE_DIR/scan`` if ``SR_CACHE_DIR`` is set, else ``~/.cache/sr_lightning/scan``."""
    env = os.environ.get("SR_CACHE_DIR")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "sr_lightning"
    return root / "scan"


def default_workers() -> int:
    """Threads for decoding: the CPU cores this process may use (decoding is CPU-bound, PIL drops the GIL)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_image(path: str | os.PathLike) -> FileCheck:
    """Decode ``path`` completely; a missing, unreadable, truncated or unconvertible file gives an error verdict."""
    path = Path(path)
    try:
        arr = load_image(path)
    except (BadImageError, OSError) as err:  # OSError: missing file, permission denied, I/O error
        msg = str(err)
        return FileCheck(path, None, msg if str(path) in msg else f"{path}: {msg}")
    return FileCheck(path, (int(arr.shape[1]), int(arr.shape[0])), None)


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _cache_file(cache_dir: Path, folder: Path) -> Path:
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return cache_dir / f"{folder.name[:40] or 'root'}-{digest}.json"


def _read_cache(file: Path) -> dict[str, dict]:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):  # absent, unreadable or half-written by an old version: start afresh
        return {}
    if not isinstance(data, dict) or data.get("version") != _CACHE_KEY or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]


def _write_cache(file: Path, folder: Path, entries: dict[str, dict]) -> None:
    """Atomic write: concurrent runs and DDP ranks never read half a file."""
    atomic_write_text(file, json.dumps({"version": _CACHE_KEY, "folder": str(folder), "files": entries}))


def scan_images(
    paths: Iterable[str | os.PathLike],
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    desc: str = "checking images",
) -> dict[Path, FileCheck]:
    """Check every file of ``paths`` (duplicates once); returns ``{path: FileCheck}`` keyed by the paths as given.

    Files whose name, size and mtime match a cached good verdict are not decoded again. ``workers``: decoding
    threads (default :func:`default_workers`); ``cache_dir``: default :func:`scan_cache_dir`.
    """
    unique = list(dict.fromkeys(Path(p) for p in paths))
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else scan_cache_dir()
    results: dict[Path, FileCheck] = {}
    folders: dict[Path, dict[str, dict]] = {}  # resolved folder -> its cache entries
    todo: list[tuple[Path, Path, tuple[int, int]]] = []  # (path as given, resolved path, stat key)
    for path in unique:
        key = _stat_key(path)
        if key is None:
            results[path] = FileCheck(path, None, f"{path}: image file not found or not readable")
            continue
        real = path.resolve()
        if real.parent not in folders:
            folders[real.parent] = _read_cache(_cache_file(cache_root, real.parent)) if use_cache else {}
        entry = folders[real.parent].get(real.name)
        if entry and (entry.get("size"), entry.get("mtime_ns")) == key and entry.get("wh"):
            results[path] = FileCheck(path, (int(entry["wh"][0]), int(entry["wh"][1])), None)
        else:
            todo.append((path, real, key))

    start = time.perf_counter()
    if todo:
        n_threads = max(1, min(workers or default_workers(), len(todo)))
        show = len(todo) >= _PROGRESS_MIN_FILES
        if show:
            log.info("%s: decoding %d files with %d threads (%d cached)", desc, len(todo), n_threads, len(results))
        with (
            ThreadPoolExecutor(n_threads, thread_name_prefix="sr-scan") as pool,
            tqdm(total=len(todo), desc=desc, unit="img", disable=None if show else True, leave=False) as bar,
        ):
            for (path, real, key), verdict in zip(todo, pool.map(check_image, [t[0] for t in todo])):
                results[path] = verdict
                entries = folders[real.parent]
                if verdict.ok:
                    entries[real.name] = {"size": key[0], "mtime_ns": key[1], "wh": list(verdict.size)}
                else:
                    entries.pop(real.name, None)
                bar.update()
        if use_cache:
            changed = {r.parent for _, r, _ in todo}
            for folder in changed:
                try:
                    _write_cache(_cache_file(cache_root, folder), folder, folders[folder])
                except OSError as err:  # read-only home, full disk: the check still stands, only uncached
                    log.warning("could not write the image-check cache under %s (%s)", cache_root, err)
                    break
    n_bad = sum(not r.ok for r in results.values())
    log.log(
        logging.INFO if todo or n_bad else logging.DEBUG,  # a fully cached clean check is not news
        "%s: %d files (%d decoded in %.1f s, the rest cached or missing), %d bad",
        desc,
        len(unique),
        len(todo),
        time.perf_counter() - start,
        n_bad,
    )
    return {p: results[p] for p in unique}
