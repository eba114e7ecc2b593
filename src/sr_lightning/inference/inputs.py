"""What `upscale input=...` names: a file, a folder (recursive on request), a glob, or a text file of paths.

A named file that does not exist is kept (a line of a list file, an item of ``[a.png,b.png]``, a single
``input=``), so that the run reports it by name and goes on with the rest. Temporary files of atomic writes
(`sr_lightning.utils.atomic.is_temp_file`: what an interrupted run leaves) are never inputs, and folders and globs
skip hidden files and folders (names starting with a dot).
"""

from __future__ import annotations

import glob
from pathlib import Path

from PIL import Image

from sr_lightning.utils.atomic import is_temp_file

#: suffixes of the files a folder or glob contributes (every format Pillow opens), and list files
LIST_SUFFIXES = (".txt", ".lst")


def image_suffixes() -> set[str]:
    """Every file suffix Pillow registers a decoder for."""
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def _hidden(relative: Path) -> bool:
    """A dot-prefixed file, or a file inside a dot-prefixed folder (relative to the folder being searched)."""
    return any(part.startswith(".") for part in relative.parts)


def _folder(path: Path, recursive: bool) -> list[tuple[Path, Path]]:
    suffixes = image_suffixes()
    files = sorted(p for p in (path.rglob("*") if recursive else path.iterdir()) if p.is_file())
    named = [(p, p.relative_to(path)) for p in files if p.suffix.lower() in suffixes]
    return [(p, rel) for p, rel in named if not _hidden(rel) and not is_temp_file(p)]


def _listed(path: Path) -> list[tuple[Path, Path]]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    listed = [Path(line).expanduser() for line in lines if line and not line.startswith("#")]
    files = [p if p.is_absolute() else path.parent / p for p in listed]
    return [(p, Path(p.name)) for p in files if not is_temp_file(p)]


def collect_inputs(spec: str | Path | list, recursive: bool = False) -> list[tuple[Path, Path]]:
    """(file, its path relative to the input root) for every input, in a stable order.

    - a folder: its image files (sub-folders too with `recursive`), named relative to the folder;
    - a text file (``.txt``/``.lst``): one path per line (blank lines and ``#`` comments skipped; relative paths
      are relative to the list's folder);
    - a file: itself; a glob (``*``, ``?``, ``[``): the matching files (``**`` with `recursive`);
    - a list of any of these.
    A named file that is missing is kept, to be reported by name; a glob that matches nothing adds nothing.
    """
    if isinstance(spec, (list, tuple)) or type(spec).__name__ == "ListConfig":
        return [item for s in spec for item in collect_inputs(s, recursive)]
    path = Path(str(spec)).expanduser()
    if path.is_dir():
        return _folder(path, recursive)
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        return _listed(path)
    if any(c in str(spec) for c in "*?[") and not path.exists():
        matches = sorted(Path(m) for m in glob.glob(str(spec), recursive=recursive))
        return [(p, Path(p.name)) for p in matches if p.is_file() and not is_temp_file(p)]
    return [] if is_temp_file(path) else [(path, Path(path.name))]
