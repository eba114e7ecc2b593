"""The benchmark's tables: the EFDN paper's Table 4 layout, a long table with cost columns, per-image scores.

- ``table4.md``: rows set x scale, one column per method headed "<method> <params>/<MACs>", MATLAB bicubic first,
  cells "PSNR/SSIM" (the papers' Y-channel metric); a second block for the NTIRE RGB PSNR when it was scored.
- ``table.csv`` / ``table.md``: one row per method and scale: every set's scores, then the complexity columns
  (deploy-form params, NTIRE FLOPs and activations at 256x256 LR, MACs for a 1280x720 output, runtime here).
- ``per_image.csv``: every image's scores; ``table.json``: all of it, with the conventions spelled out.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sr_lightning.evaluation.runs import MethodResult
from sr_lightning.utils.atomic import atomic_write_text

#: what each score column means (written into table.json and under the Markdown tables)
CONVENTIONS = {
    "psnr": "Y-PSNR (dB), papers' MATLAB protocol: uint8 rounding, BT.601 Y, `scale` border pixels shaved",
    "ssim": "Y-SSIM, papers' MATLAB protocol: 11x11 Gaussian window (sigma 1.5), 'valid' filtering, same shave",
    "psnr_rgb": "RGB PSNR (dB), NTIRE efficient-SR challenge: uint8 RGB, 4 border pixels at every scale",
    "params": "parameters of the deploy form (re-parameterizable blocks folded, weight norm baked in)",
    "macs_720p": "multiply-accumulates of one forward pass producing a 1280x720 image (papers' convention)",
    "flops_256": "FLOPs, NTIRE convention (1 multiply-add = 1 FLOP) for a 256x256 LR input",
    "activations_256": "sum of conv output elements for a 256x256 LR input (NTIRE definition)",
    "runtime_ms_median": "median ms of one forward pass on a 256x256 LR input on this machine (complexity.runtime)",
    "passes": "forward passes per image: the cost columns are per pass (x8 ensemble: 8 passes, plus flips)",
}
COST_KEYS = (
    "params_deploy",
    "macs_720p",
    "flops_256",
    "activations_256",
    "conv_calls_256",
    "runtime_ms_median",
    "runtime_device",
)


@dataclass
class BenchmarkTable:
    """Everything a benchmark run measured. ``complexity`` is keyed by (label, scale)."""

    results: list[MethodResult]
    set_names: list[str]
    missing_sets: list[str] = field(default_factory=list)
    complexity: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    psnr_decimals: int = 2

    @property
    def scales(self) -> list[int]:
        return sorted({r.method.scale for r in self.results})

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys(r.method.column for r in self.results))

    def result(self, column: str, scale: int) -> MethodResult | None:
        return next((r for r in self.results if r.method.column == column and r.method.scale == scale), None)

    def bicubic(self, set_name: str, scale: int) -> dict[str, float]:
        """MATLAB-bicubic scores of `set_name` at `scale` (the same for every method of that scale)."""
        for r in self.results:
            row = r.sets.get(set_name, {})
            if r.method.scale == scale and "bicubic_psnr" in row:
                return {k[len("bicubic_") :]: v for k, v in row.items() if k.startswith("bicubic_")}
        return {}

    def cost(self, column: str, scale: int) -> dict[str, Any]:
        r = self.result(column, scale)
        return self.complexity.get((r.method.label, scale), {}) if r else {}


def _si(value: float, unit: str = "") -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= div:
            return f"{value / div:.1f}{suffix}{unit}"
    return f"{value:g}{unit}"


def _header(table: BenchmarkTable, column: str) -> str:
    """ "<method> <params>/<MACs>" at the largest scale the method was run at (the paper's Table 4 gives x4)."""
    scale = max(s for s in table.scales if table.result(column, s))
    cost = table.cost(column, scale)
    if "params_deploy" not in cost:
        return column
    runs = 8 if table.result(column, scale).method.variant.ensemble else 1  # type: ignore[union-attr]
    return f"{column} {_si(cost['params_deploy'])}/{_si(cost['macs_720p'] * runs)}"


def table4_markdown(table: BenchmarkTable, key: str = "psnr") -> str:
    """Table 4 of the EFDN paper: rows set x scale, MATLAB bicubic first, one column per method ("PSNR/SSIM").
    ``key="psnr_rgb"`` gives the NTIRE RGB PSNR block instead (no SSIM)."""
    columns = table.columns
    lines = [
        "| Dataset | Scale | Bicubic | " + " | ".join(_header(table, c) for c in columns) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]

    def cell(row: Mapping[str, Any] | None) -> str:
        if not row or key not in row:
            return "-"
        text = f"{row[key]:.{table.psnr_decimals}f}"
        return f"{text}/{row['ssim']:.4f}" if key == "psnr" else text

    for name in table.set_names:
        for scale in table.scales:
            cells = [cell(table.bicubic(name, scale))]
            for column in columns:
                r = table.result(column, scale)
                cells.append(cell(r.sets.get(name) if r else None))
            lines.append(f"| {name} | x{scale} | " + " | ".join(cells) + " |")
    macs_note = "Params/MACs: deploy form at the method's largest scale, MACs for a 1280x720 output"
    notes = [CONVENTIONS[key], macs_note + " (x8 ensemble: 8 passes)."]
    if table.missing_sets:
        notes.append(f"Missing (not evaluated): {', '.join(table.missing_sets)}.")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def long_rows(table: BenchmarkTable) -> list[dict[str, Any]]:
    """One row per method and scale: identity, every set's scores, then the cost columns."""
    rows = []
    for r in table.results:
        m = r.method
        row: dict[str, Any] = {
            "method": m.column,
            "network": m.detected.name,
            "weights": m.weights,
            "scale": m.scale,
            "chop": m.variant.chop,
            "ensemble": m.variant.ensemble,
            "passes": 8 if m.variant.ensemble else 1,
        }
        for name in table.set_names:
            scores = r.sets.get(name, {})
            for k in ("psnr", "ssim", "psnr_rgb", "images"):
                if k in scores:
                    row[f"{name}_{k}"] = scores[k]
        cost = table.complexity.get((m.label, m.scale), {})
        row.update({k: cost[k] for k in COST_KEYS if k in cost})
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 100_000:
        return _si(value)
    return str(value)


def long_markdown(rows: list[dict[str, Any]]) -> str:
    """`long_rows` as a Markdown table (weights paths left to the CSV)."""
    fields = [k for k in dict.fromkeys(k for row in rows for k in row) if k != "weights"]
    lines = ["| " + " | ".join(fields) + " |", "| " + " | ".join("---" for _ in fields) + " |"]
    lines += ["| " + " | ".join(_fmt(row.get(k, "-")) for k in fields) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def image_rows(table: BenchmarkTable) -> list[dict[str, Any]]:
    """Every image's scores, labelled with its method and scale."""
    return [{"method": r.method.column, "scale": r.method.scale, **row} for r in table.results for row in r.images]


def write_tables(table: BenchmarkTable, out_dir: str | Path, **meta: Any) -> dict[str, Path]:
    """Write table4.md, table.md, table.csv, per_image.csv and table.json into `out_dir`; returns their paths."""
    out = Path(out_dir)
    rows = long_rows(table)
    has_rgb = any("psnr_rgb" in s for r in table.results for s in r.sets.values())
    table4 = "### Y-PSNR / SSIM (papers' protocol)\n\n" + table4_markdown(table)
    if has_rgb:
        table4 += "\n### RGB PSNR (NTIRE challenge)\n\n" + table4_markdown(table, "psnr_rgb")
    texts = {
        "table4.md": table4,
        "table.md": long_markdown(rows),
        "table.csv": _csv(rows),
        "per_image.csv": _csv(image_rows(table)),
        "table.json": json.dumps(
            {
                **meta,
                "conventions": CONVENTIONS,
                "sets": table.set_names,
                "missing_sets": table.missing_sets,
                "rows": rows,
                "bicubic": [
                    {"set": n, "scale": s, **table.bicubic(n, s)} for n in table.set_names for s in table.scales
                ],
                "lr_sources": {r.method.column: r.lr_sources for r in table.results},
                "complexity": [{"label": k[0], "scale": k[1], **v} for k, v in table.complexity.items()],
            },
            indent=2,
        )
        + "\n",
    }
    return {name: atomic_write_text(out / name, text) for name, text in texts.items()}
