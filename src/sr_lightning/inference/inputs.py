"""What `upscale input=...` names: a file, a folder (recursive on request), a glob, or a text file of paths."""

from __future__ import annotations

import glob
from pathlib import Path

from PIL import Image

#: suffixes of the files a folder or glob contributes (every format Pillow opens), and list files
LIST_SUFFIXES = (".txt", ".lst")


def image_suffixes() -> set[str]:
    """Every file suffix Pillow registers a decoder for."""
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def collect_inputs(spec: str | Path | list, recursive: bool = False) -> list[tuple[Path, Path]]:
    """(file, its path relative to the input root) for every input, in a stable order.

    - a folder: its image files (sub-folders too with `recursive`), named relative to the folder;
    - a text file (``.txt``/``.lst``): one path per line (blank lines and ``#`` comments skipped; relative paths
      are relative to the list's folder); listed files that are missing are kept, to be reported by name;
    - a file: itself; a glob (``*``, ``?``, ``[``): the matching files (``**`` with `recursive`);
    - a list of any of these.
    """
    if isinstance(spec, (list, tuple)) or type(spec).__name__ == "ListConfig":
        return [item for s in spec for item in collect_inputs(s, recursive)]
    path = Path(str(spec)).expanduser()
    if path.is_dir():
        suffixes = image_suffixes()
        files = sorted(p for p in (path.rglob("*") if recursive else path.iterdir()) if p.is_file())
        return [(p, p.relative_to(path)) for p in files if p.suffix.lower() in suffixes]
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        listed = [Path(line).expanduser() for line in lines if line and not line.startswith("#")]
        return [(p if p.is_absolute() else path.parent / p, Path(p.name)) for p in listed]
    if path.is_file():
        return [(path, Path(path.name))]
    if any(c in str(spec) for c in "*?["):
        matches = sorted(Path(m) for m in glob.glob(str(spec), recursive=recursive))
        return [(p, Path(p.name)) for p in matches if p.is_file()]
    raise FileNotFoundError(f"input not found: {spec} (a file, a folder, a glob or a .txt list of paths)")
