"""One summary table for a Hydra multirun: every run's overrides, size, MACs and validation PSNR.

Each training run writes `summary.json` into its own directory (see `sr_lightning.train`); this Hydra callback,
enabled by the `hparams_search` configs, gathers them at the end of the sweep into `summary.csv` and `summary.md`
in the sweep directory.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# num_params / macs_720p: the deploy form (what is shipped); num_params_train: the network as trained
COLUMNS = ("run", "overrides", "num_params", "macs_720p", "num_params_train", "val_psnr", "val_ssim", "steps")


def collect(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The `summary.json` of every run under `sweep_dir`, ordered by job number."""
    rows = []
    for path in Path(sweep_dir).glob("*/summary.json"):
        row = json.loads(path.read_text())
        row["run"] = path.parent.name
        rows.append(row)
    return sorted(rows, key=lambda r: (len(r["run"]), r["run"]))


def write_tables(sweep_dir: str | Path, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    """Write `summary.csv` and `summary.md` (best validation PSNR first in the Markdown table)."""
    sweep_dir = Path(sweep_dir)
    csv_path, md_path = sweep_dir / "summary.csv", sweep_dir / "summary.md"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    def fmt(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)

    ranked = sorted(rows, key=lambda r: -(r.get("val_psnr") or float("-inf")))
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in COLUMNS) + " |" for r in ranked]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


class SweepSummary(Callback):
    """Hydra callback: write the sweep's summary tables when the multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = config.hydra.sweep.dir
        rows = collect(sweep_dir)
        if not rows:
            log.warning("no run summaries found under %s", sweep_dir)
            return
        _, md = write_tables(sweep_dir, rows)
        print(md.read_text())
        log.info("sweep summary: %s", md)
