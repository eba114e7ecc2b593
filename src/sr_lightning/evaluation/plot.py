"""PSNR against MACs, bubble area proportional to parameters: the EFDN paper's Fig. 4, from a benchmark run."""

from __future__ import annotations

import math
from pathlib import Path

from sr_lightning.evaluation.tables import BenchmarkTable
from sr_lightning.utils.atomic import atomic_path


def plot_points(table: BenchmarkTable, set_name: str, scale: int) -> list[dict[str, float | str]]:
    """(method, MACs, PSNR, params) of every method scored on `set_name` at `scale` with known complexity."""
    points = []
    for column in table.columns:
        r = table.result(column, scale)
        cost = table.cost(column, scale)
        if r is None or set_name not in r.sets or "macs_720p" not in cost:
            continue
        runs = 8 if r.method.variant.ensemble else 1
        points.append(
            {
                "method": column,
                "macs": float(cost["macs_720p"]) * runs,
                "psnr": float(r.sets[set_name]["psnr"]),
                "params": float(cost["params_deploy"]),
            }
        )
    return points


def plot_psnr_vs_macs(table: BenchmarkTable, set_name: str, scale: int, path: str | Path) -> Path | None:
    """Save the plot as PNG; None (nothing written) when no method has a score on `set_name` x`scale`."""
    points = plot_points(table, set_name, scale)
    if not points:
        return None
    from matplotlib.figure import Figure  # not pyplot: no global backend or figure state is touched

    biggest = max(p["params"] for p in points)
    fig = Figure(figsize=(6.4, 4.8), dpi=120)
    ax = fig.subplots()
    for p in points:
        area = 2500.0 * float(p["params"]) / biggest  # bubble area ~ parameters
        ax.scatter(p["macs"] / 1e9, p["psnr"], s=area, alpha=0.5, edgecolors="k")
        ax.annotate(
            f"{p['method']}\n{p['params'] / 1e3:.0f}K params",  # a label may name a size too: "RFDN (AIM 2020, 433K)"
            (p["macs"] / 1e9, p["psnr"]),
            textcoords="offset points",
            xytext=(math.sqrt(area) / 2 + 4, 0),  # right of the bubble
            ha="left",
            va="center",
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_xlabel("MACs (G), 1280x720 output, deploy form (log scale)")
    ax.set_ylabel(f"Y-PSNR (dB) on {set_name} x{scale}")
    ax.set_title(f"PSNR vs. MACs on {set_name} x{scale} (bubble area ~ parameters)")
    ax.margins(x=0.6, y=0.3)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
