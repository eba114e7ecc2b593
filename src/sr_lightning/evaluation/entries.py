"""What a benchmark evaluates: methods (a weights file, detected network and scale, an inference variant) x sets.

Each weights file is detected as `upscale` detects it (`sr_lightning.inference.detect`), so one list can mix
networks and scales. An entry of ``weights`` is a path, or a mapping ``{path: <file>, scale: <s>, label: <name>}``
(``scale`` and ``label`` optional): ``scale`` is passed to the detection, for files whose shapes do not show it (PAN
x2 and x3 files are identical in shape) and checked against those that do. A method's column label is the entry's
``label``, else the parallel ``labels`` list's, else the network's class name (``EFDN``); files of one network at
different scales share the column (rows are set x scale, as in the EFDN paper's Table 4). Two unlabelled files that
would land in the same cell are told apart by their file names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sr_lightning.data.benchmark import available_sets
from sr_lightning.inference.detect import Detected, detect_model


@dataclass(frozen=True)
class Variant:
    """How the network is run: whole image or EDSR chop, plain or x8 self-ensemble."""

    chop: bool = False
    ensemble: bool = False

    @property
    def suffix(self) -> str:
        """Appended to the method label: "" for the plain forward, else e.g. " (x8 ensemble, chop)"."""
        parts = (["x8 ensemble"] if self.ensemble else []) + (["chop"] if self.chop else [])
        return f" ({', '.join(parts)})" if parts else ""


@dataclass(frozen=True)
class Method:
    """One weights file run one way: a column of the table (at its scale's rows)."""

    label: str
    weights: str
    detected: Detected
    variant: Variant

    @property
    def scale(self) -> int:
        return self.detected.scale

    @property
    def column(self) -> str:
        return self.label + self.variant.suffix


def variants(plain: bool = True, chop: bool = False, ensemble: bool = False) -> list[Variant]:
    """The inference variants requested: the plain forward (unless ``plain=False``), chop, x8 ensemble, both."""
    found = [Variant()] if plain else []
    if chop:
        found.append(Variant(chop=True))
    if ensemble:
        found.append(Variant(ensemble=True))
    if chop and ensemble:
        found.append(Variant(chop=True, ensemble=True))
    if not found:
        raise ValueError("nothing to evaluate: plain=false needs chop=true or ensemble=true")
    return found


#: an entry of ``weights``: a path, or a mapping with these keys (``path`` required)
WeightsEntry = str | os.PathLike | Mapping[str, Any]
ENTRY_KEYS = ("path", "scale", "label")


@dataclass(frozen=True)
class WeightsSpec:
    """One ``weights`` entry, read: the file, the scale to detect it at (None: from the file), its label."""

    path: str
    scale: int | None = None
    label: str | None = None


def read_entry(entry: WeightsEntry, index: int = 0) -> WeightsSpec:
    """A ``weights`` entry as a `WeightsSpec`; errors name the entry and the key to fix."""
    where = f"weights[{index}]"
    if isinstance(entry, (str, os.PathLike)):
        return WeightsSpec(str(entry))
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: {entry!r} is neither a path nor a mapping {{path: <file>, scale: <s>, label: <n>}}")
    unknown = sorted(str(k) for k in entry if k not in ENTRY_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; an entry takes {', '.join(ENTRY_KEYS)}")
    path, scale, label = (entry.get(k) for k in ENTRY_KEYS)
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"{where}: `path: <file>` is required in a mapping entry (got {entry!r})")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale < 1):
        raise ValueError(f"{where} ({path}): `scale` must be a positive integer (the SR factor), got {scale!r}")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise ValueError(f"{where} ({path}): `label` must be a non-empty string, got {label!r}")
    return WeightsSpec(str(path), scale, label)


def resolve_methods(
    weights: WeightsEntry | Sequence[WeightsEntry], labels: Sequence[str] | None, runs: Sequence[Variant]
) -> list[Method]:
    """Detect every weights file (at its entry's ``scale`` when given) and expand it into one method per variant,
    with unique column labels."""
    if isinstance(weights, (str, os.PathLike, Mapping)):
        weights = [weights]
    if not weights:
        raise ValueError("`weights=[<file>,...]` is required: the checkpoints to compare")
    if labels is not None and len(labels) != len(weights):
        raise ValueError(f"labels has {len(labels)} entries for {len(weights)} weights files")
    specs = [read_entry(w, i) for i, w in enumerate(weights)]
    if labels is not None:
        twice = [s.path for s in specs if s.label is not None]
        if twice:
            raise ValueError(f"label given twice (weights entry and `labels`) for {', '.join(twice)}: keep one")
        specs = [WeightsSpec(s.path, s.scale, str(n)) for s, n in zip(specs, labels, strict=True)]
    missing = [s.path for s in specs if not Path(s.path).expanduser().is_file()]
    if missing:
        raise FileNotFoundError(f"weights file(s) not found: {', '.join(missing)}")
    detected = [detect_model(Path(s.path).expanduser(), scale=s.scale) for s in specs]
    names = [s.label or d.name for s, d in zip(specs, detected, strict=True)]
    # Two unlabelled files with one network and one scale would share cells: tell them apart by file name.
    keys = [(n, d.scale) for n, d in zip(names, detected, strict=True)]
    names = [
        f"{n} [{Path(s.path).stem}]" if s.label is None and keys.count(k) > 1 else n
        for n, k, s in zip(names, keys, specs, strict=True)
    ]
    if len(set(zip(names, (d.scale for d in detected), strict=True))) < len(names):
        raise ValueError(f"two weights files have the same label and scale: labels {names}")
    return [
        Method(label=n, weights=s.path, detected=d, variant=v)
        for n, s, d in zip(names, specs, detected, strict=True)
        for v in runs
    ]


@dataclass(frozen=True)
class TestSet:
    """A benchmark set in the EDSR layout: ``<root>/<name>/HR`` (+ ``LR_bicubic/X<s>``)."""

    name: str
    root: Path


def resolve_sets(test_sets: Sequence[str], benchmark_dir: str | os.PathLike | None) -> tuple[list[TestSet], list[str]]:
    """Split `test_sets` into those found and those missing.

    An entry is a set name under ``benchmark_dir`` (Set5, Set14, B100, Urban100, Manga109, ...) or the path of any
    folder in the EDSR layout (it holds ``HR/``); its name is the folder's name.
    """
    found: list[TestSet] = []
    missing: list[str] = []
    root = Path(benchmark_dir).expanduser() if benchmark_dir else None
    for entry in [str(s) for s in test_sets]:
        path = Path(entry).expanduser()
        if (path / "HR").is_dir():
            found.append(TestSet(path.name, path.parent))
        elif root is not None and entry in available_sets(root):
            found.append(TestSet(entry, root))
        else:
            missing.append(entry)
    names = [s.name for s in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"test set name(s) given twice: {', '.join(dupes)}")
    return found, missing
