"""One summary table for a Hydra multirun: every run's status, overrides, size, MACs and validation PSNR.

Each training run writes `summary.json` into its own directory (see `sr_lightning.train`). This Hydra callback
(`hydra.callbacks.summary` of conf/train.yaml) gathers them, in multiruns, into `summary.csv` and `summary.md` in the
sweep directory, for every sweeper (basic grid, Optuna) and launcher (local, submitit):
- after each job: a job that failed (an exception, e.g. a bad value) gets a `summary.json` with status "failed" and
  the error, and the tables are rewritten, so they are current while the sweep runs and complete even when Hydra
  stops with an error after the failed job's batch (it then calls no `on_multirun_end`);
- at the end of the multirun: once more, and printed (counts as every report writes them: "663,848", "9.73 G").

A job of an experiment that has reference numbers, the EFDN paper's Table-3 rows (`experiment=ablation/<row>`), gets
them in its `summary.json` (`paper`), from one data file, `conf/experiment/ablation/_paper.yaml` (read as data, never
composed); the tables put them beside the run's scores. A completed run that ended before its first validation (a
short grid sweep) is listed with "no validation ran".
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from sr_lightning.config import conf_files
from sr_lightning.profiling.table import _count, _giga
from sr_lightning.utils.atomic import atomic_open, atomic_write_text
from sr_lightning.utils.run_lock import is_launching_process

log = logging.getLogger(__name__)

# num_params / macs_720p: the deploy form (what is shipped); num_params_train: the network as trained
COLUMNS = ("run", "status", "overrides", "num_params", "macs_720p", "num_params_train", "val_psnr", "val_ssim", "steps")
#: the reference numbers of experiments, by experiment option (a data file shipped with the configs)
PAPER_TABLE = ("experiment", "ablation", "_paper.yaml")
NO_VALIDATION = "no validation ran"


def paper_numbers(experiment: str | None) -> dict[str, str] | None:
    """The paper's "PSNR/SSIM" per set of the experiment option `experiment` (`PAPER_TABLE`), or None."""
    if not experiment:
        return None
    table = yaml.safe_load(conf_files().joinpath(*PAPER_TABLE).read_text())
    row = table["rows"].get(experiment)
    return None if row is None else dict(zip(table["sets"], row, strict=True))


def collect(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The `summary.json` of every run under `sweep_dir`, ordered by job number."""
    rows = []
    for path in Path(sweep_dir).glob("*/summary.json"):
        row = json.loads(path.read_text())
        row["run"] = path.parent.name
        row.setdefault("status", "completed")
        rows.append(row)
    return sorted(rows, key=lambda r: (len(r["run"]), r["run"]))


def _sets(rows: list[dict[str, Any]], key: str) -> list[str]:
    """Set names under `key` ("test": the test loop, "paper": reference numbers of the config), first seen first."""
    names: list[str] = []
    for row in rows:
        names += [name for name in row.get(key) or {} if name not in names]
    return names


def _flat(row: dict[str, Any], tested: list[str], paper: list[str]) -> dict[str, Any]:
    flat = dict(row)
    for name in tested:
        scores = (row.get("test") or {}).get(name) or {}
        flat[f"{name}_psnr"], flat[f"{name}_ssim"] = scores.get("psnr"), scores.get("ssim")
    for name in paper:
        flat[f"paper_{name}"] = (row.get("paper") or {}).get(name)
    return flat


def write_tables(sweep_dir: str | Path, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    """Write `summary.csv` and `summary.md`: one row per run in job order, with its rank by best validation PSNR,
    its test-loop PSNR/SSIM per set (the deploy form; Table-3 style) and, when its config carries `paper:`
    reference numbers, those beside them."""
    sweep_dir = Path(sweep_dir)
    tested, paper = _sets(rows, "test"), _sets(rows, "paper")
    flat = [_flat(r, tested, paper) for r in rows]
    score_cols = [f"{n}_{m}" for n in tested for m in ("psnr", "ssim")]
    csv_path, md_path = sweep_dir / "summary.csv", sweep_dir / "summary.md"
    with atomic_open(csv_path, "w", newline="") as f:  # jobs of a parallel launcher write too
        fields = (*COLUMNS, *score_cols, *(f"paper_{n}" for n in paper), "error")
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(flat)

    def fmt(column: str, row: dict[str, Any]) -> str:
        value = row.get(column)
        if column == "val_psnr" and value is None and row.get("status", "completed") == "completed":
            return NO_VALIDATION
        if value is None:
            return ""
        if column == "macs_720p":
            return _giga(value)  # as every complexity report writes them: "9.73 G"
        return f"{value:.4f}" if isinstance(value, float) else _count(value) if isinstance(value, int) else str(value)

    def scores(row: dict[str, Any], name: str) -> str:
        psnr, ssim = row.get(f"{name}_psnr"), row.get(f"{name}_ssim")
        return "" if psnr is None else f"{psnr:.2f}/{ssim:.4f}"

    ranked = sorted(rows, key=lambda r: -(r.get("val_psnr") or float("-inf")))
    rank = {r["run"]: i + 1 for i, r in enumerate(ranked) if r.get("val_psnr") is not None}
    heads = ["rank", *COLUMNS, *tested, *(f"paper {n}" for n in paper)]
    lines = ["| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    for row in flat:
        cells = [str(rank.get(row["run"], "")), *(fmt(c, row) for c in COLUMNS)]
        cells += [scores(row, n) for n in tested] + [fmt(f"paper_{n}", row) for n in paper]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [
        f"- run {r['run']} failed: {' '.join(str(r.get('error', '')).split())}"
        for r in rows
        if r.get("status", "completed") != "completed"
    ]
    note = ["", "Test columns: Y-PSNR / SSIM of the deploy form (test loop, MATLAB protocol)."] if tested else []
    unvalidated = [r["run"] for r in rows if r.get("status", "completed") == "completed" and r.get("val_psnr") is None]
    if unvalidated:  # e.g. a grid sweep with trainer.max_steps below stage.val_every_n_steps
        note += ["", f"Runs {', '.join(unvalidated)}: {NO_VALIDATION} (they ended before stage.val_every_n_steps)."]
    atomic_write_text(md_path, "\n".join(lines + note + ([""] + failed if failed else [])) + "\n")
    return csv_path, md_path


def write_summary(job_dir: str | Path, summary: dict[str, Any]) -> Path:
    """Write a job's `summary.json` (atomically: the tables may be gathered while jobs run)."""
    path = Path(job_dir) / "summary.json"
    return atomic_write_text(path, json.dumps(summary, indent=2) + "\n")


def record_failure(job_dir: str | Path, overrides: list[str], error: BaseException) -> Path:
    """Write the `summary.json` of a job that raised `error` (status "failed")."""
    summary = {"status": "failed", "overrides": " ".join(overrides), "error": f"{type(error).__name__}: {error}"}
    return write_summary(job_dir, summary)


def add_paper_numbers(job_dir: str | Path, experiment: str | None) -> None:
    """Put the paper's numbers of `experiment` (if it has any) into the job's `summary.json` (if it wrote one)."""
    path, paper = Path(job_dir) / "summary.json", paper_numbers(experiment)
    if paper is not None and path.is_file():
        write_summary(job_dir, {**json.loads(path.read_text()), "paper": paper})


def _multirun(config: DictConfig) -> bool:
    # DDP ranks of a multirun job run as single runs (hydra.mode=RUN, sr_lightning.lightning.hydra_ddp): skip them
    return config.hydra.get("mode") == RunMode.MULTIRUN


class SweepSummary(Callback):
    """Hydra callback: after each job, its paper numbers (any run) and, in a multirun, its failure and the sweep's
    tables; at the end of a multirun, the tables again, printed."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not is_launching_process():  # a DDP rank of the run: rank 0 writes
            return
        job_dir = config.hydra.runtime.output_dir
        if _multirun(config) and job_return.status == JobStatus.FAILED:
            record_failure(job_dir, list(job_return.overrides or []), job_return._return_value)
        add_paper_numbers(job_dir, config.hydra.runtime.choices.get("experiment"))
        if not _multirun(config):
            return
        rows = collect(config.hydra.sweep.dir)
        if rows:
            write_tables(config.hydra.sweep.dir, rows)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = config.hydra.sweep.dir
        rows = collect(sweep_dir)
        if not rows:
            log.warning("no run summaries found under %s", sweep_dir)
            return
        _, md = write_tables(sweep_dir, rows)
        print(md.read_text())
        log.info("sweep summary: %s", md)
