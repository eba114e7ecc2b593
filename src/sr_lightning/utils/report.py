"""The benchmark table printed by the entry points and the `benchmark.json` they write."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sr_lightning.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)


class NothingEvaluatedError(RuntimeError):
    """A test loop that scored no image: there is no result to report (and no benchmark.json is written)."""


def unevaluated_sets(results: dict[str, dict[str, Any]], expected: list[str] | None = None) -> list[str]:
    """Sets of ``expected`` (default: those in ``results``) that have no row or scored zero images."""
    names = list(results) if expected is None else list(expected)
    return [n for n in names if int(results.get(n, {}).get("images", 0)) <= 0]


def format_table(results: dict[str, dict[str, Any]], scale: int, model: str) -> str:
    """Markdown table, one row per test set: Y-PSNR/SSIM of the model and of MATLAB bicubic (and the NTIRE RGB PSNR
    of both when it was scored)."""
    rgb = any("psnr_rgb" in row for row in results.values())
    extra = " RGB PSNR (NTIRE) | Bicubic RGB PSNR |" if rgb else ""
    lines = [
        "| Model | Set | Scale | Images | LR | PSNR (dB) | SSIM | Bicubic PSNR | Bicubic SSIM |" + extra,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if rgb else ""),
    ]

    def num(row: dict[str, Any], key: str) -> str:
        return f"{row[key]:.4f}" if key in row else "-"

    for name, row in results.items():
        keys = ["psnr", "ssim", "bicubic_psnr", "bicubic_ssim"] + (["psnr_rgb", "bicubic_psnr_rgb"] if rgb else [])
        lines.append(
            f"| {model} | {name} | x{scale} | {row['images']} | {row.get('lr_source', '-')} | "
            + " | ".join(num(row, k) for k in keys)
            + " |"
        )
    return "\n".join(lines)


def write_benchmark_json(path: str | Path, results: dict[str, dict[str, Any]], **meta: Any) -> Path:
    """Write `{**meta, "sets": results}` to `path` (atomically) and return it. Results without any scored image
    raise `NothingEvaluatedError`: an empty or partly empty benchmark.json would look like a finished benchmark."""
    empty = unevaluated_sets(results)
    if not results or empty:
        raise NothingEvaluatedError(
            f"not writing {path}: "
            + (f"no image was scored in test set(s) {', '.join(empty)}" if results else "no test set was evaluated")
        )
    return atomic_write_text(path, json.dumps({**meta, "sets": results}, indent=2, sort_keys=False) + "\n")


def report(
    results: dict[str, dict[str, Any]],
    lr_sources: dict[str, str],
    out_dir: str | Path,
    scale: int,
    model: str,
    **meta: Any,
) -> Path | None:
    """Annotate `results` with each set's LR source, print the table and write `<out_dir>/benchmark.json`.

    With no set evaluated (a training run on a machine without the benchmark sets), warn and write nothing: None.
    """
    if not results:
        log.warning("no test set was evaluated: no benchmark table, no %s", Path(out_dir) / "benchmark.json")
        return None
    for name, row in results.items():
        row["lr_source"] = lr_sources.get(name, "-")
    print(format_table(results, scale, model))
    return write_benchmark_json(Path(out_dir) / "benchmark.json", results, model=model, scale=int(scale), **meta)
