"""The benchmark table printed by the entry points and the `benchmark.json` they write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def format_table(results: dict[str, dict[str, Any]], scale: int, model: str) -> str:
    """Markdown table, one row per test set: Y-PSNR/SSIM of the model and of MATLAB bicubic."""
    lines = [
        "| Model | Set | Scale | Images | LR | PSNR (dB) | SSIM | Bicubic PSNR | Bicubic SSIM |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in results.items():
        bic_p = f"{row['bicubic_psnr']:.4f}" if "bicubic_psnr" in row else "-"
        bic_s = f"{row['bicubic_ssim']:.4f}" if "bicubic_ssim" in row else "-"
        lines.append(
            f"| {model} | {name} | x{scale} | {row['images']} | {row.get('lr_source', '-')} | "
            f"{row['psnr']:.4f} | {row['ssim']:.4f} | {bic_p} | {bic_s} |"
        )
    return "\n".join(lines)


def write_benchmark_json(path: str | Path, results: dict[str, dict[str, Any]], **meta: Any) -> Path:
    """Write `{**meta, "sets": results}` to `path` (atomically) and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**meta, "sets": results}, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def report(
    results: dict[str, dict[str, Any]],
    lr_sources: dict[str, str],
    out_dir: str | Path,
    scale: int,
    model: str,
    **meta: Any,
) -> Path:
    """Annotate `results` with each set's LR source, print the table and write `<out_dir>/benchmark.json`."""
    for name, row in results.items():
        row["lr_source"] = lr_sources.get(name, "-")
    print(format_table(results, scale, model))
    return write_benchmark_json(Path(out_dir) / "benchmark.json", results, model=model, scale=int(scale), **meta)
