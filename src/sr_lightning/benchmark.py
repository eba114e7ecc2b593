"""`python -m sr_lightning.benchmark weights=[<file>,...] test_sets=[...]`: compare checkpoints like the papers.

Examples:
    python -m sr_lightning.benchmark weights=[efdn_x2.pth,efdn_x4.pth,fdiwn_x4.pt] test_sets=[Set5,Set14]
    python -m sr_lightning.benchmark weights=[a.pth] test_sets=[Set5,/data/my_set] ensemble=true ntire_psnr=true
    python -m sr_lightning.benchmark 'weights=[{path: pan_x2.pth, scale: 2, label: PAN}]'
    python -m sr_lightning.benchmark --config-name benchmark_paper   # the papers' comparison tables, 12 files
Writes into the run directory: ``table4.md`` (the EFDN paper's Table 4 layout, then a section per ``layouts``
entry), ``table.md`` / ``table.csv`` (one row per method and scale, with cost columns), ``per_image.csv``,
``table.json``, ``psnr_vs_macs.png`` and, with ``save_images=true``, every SR image. Runs on one process or under
DDP (``trainer.devices=2``), each image scored once. Exits non-zero only when nothing could be evaluated (sets
missing on disk are listed and skipped).
"""

from __future__ import annotations

from sr_lightning.process import set_process_defaults

set_process_defaults()  # before torch allocates: see sr_lightning/process.py

import logging
import re
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sr_lightning.config import entry_point
from sr_lightning.evaluation.entries import Method, resolve_methods, resolve_sets, variants
from sr_lightning.evaluation.plot import plot_psnr_vs_macs
from sr_lightning.evaluation.runs import MethodResult, evaluate_method, load_method_network
from sr_lightning.evaluation.tables import BenchmarkTable, Layout, image_rows, long_rows, table4_text, write_tables
from sr_lightning.utils.instantiate import instantiate_dict
from sr_lightning.utils.report import NothingEvaluatedError

log = logging.getLogger(__name__)

#: the options that define a benchmark (sent to W&B as its config)
LOGGED_OPTIONS = (
    "weights",
    "labels",
    "test_sets",
    "plain",
    "chop",
    "ensemble",
    "ntire_psnr",
    "complexity",
    "plot",
    "layouts",
)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def _plain(node: Any) -> Any:
    """A config value as plain Python (interpolations such as ``${paths.shared_dir}`` resolved)."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def measure_costs(cfg: DictConfig, methods: list[Method]) -> dict[tuple[str, int], dict[str, Any]]:
    """Complexity of each (label, scale) once (variants share it): counts always, runtime when asked."""
    from sr_lightning.profiling import measure_complexity

    costs: dict[tuple[str, int], dict[str, Any]] = {}
    for m in methods:
        key = (m.label, m.scale)
        if key in costs:
            continue
        options = {"runtime": bool(cfg.complexity.runtime)}
        if cfg.complexity.runtime:
            options.update(runs=int(cfg.complexity.runs), warmup=int(cfg.complexity.warmup))
        costs[key] = measure_complexity(load_method_network(m, optimize=False), m.scale, **options)
    return costs


def run(cfg: DictConfig) -> BenchmarkTable:
    """Evaluate every method on every set found; write and print the tables (rank 0)."""
    began = time.perf_counter()
    labels = list(cfg.labels) if cfg.get("labels") else None
    weights = _plain(cfg.weights)
    weights = weights if isinstance(weights, list) else [weights]
    layouts = [Layout.from_config(node, i) for i, node in enumerate(_plain(cfg.get("layouts")) or [])]
    methods = resolve_methods(weights, labels, variants(cfg.plain, cfg.chop, cfg.ensemble))
    sets, missing = resolve_sets(list(cfg.test_sets), cfg.paths.benchmark_dir)
    if missing:
        log.warning(
            "test set(s) not found, not evaluated: %s (looked under %s; `python -m sr_lightning.data.download "
            "benchmark --root <dir>` fetches Set5, Set14, B100, Urban100)",
            ", ".join(missing),
            cfg.paths.benchmark_dir,
        )
    if not sets:
        raise NothingEvaluatedError(f"none of test_sets={list(cfg.test_sets)} was found: nothing to evaluate")
    out_dir = Path(cfg.paths.output_dir)
    results: list[MethodResult] = []
    for i, m in enumerate(methods, 1):
        log.info("[%d/%d] %s x%d on %s", i, len(methods), m.column, m.scale, ", ".join(s.name for s in sets))
        image_dir = out_dir / "images" / _slug(m.column) / f"x{m.scale}" if cfg.save_images else None
        results.append(evaluate_method(cfg, m, sets, image_dir))
    table = BenchmarkTable(results, [s.name for s in sets], missing, psnr_decimals=int(cfg.psnr_decimals))
    if not results[-1].is_global_zero:  # DDP: every rank holds the synchronised scores; rank 0 reports
        return table
    if cfg.complexity.enabled:
        table.complexity = measure_costs(cfg, methods)
    seconds = time.perf_counter() - began
    paths = write_tables(table, out_dir, layouts, wall_seconds=round(seconds, 2), weights=weights)
    plot = _plot(cfg, table, out_dir) if cfg.plot.enabled and cfg.complexity.enabled else None
    print(table4_text(table, layouts))
    log.info("wrote %s%s in %.1f s", ", ".join(str(p) for p in paths.values()), f", {plot}" if plot else "", seconds)
    _log_wandb(cfg, table, plot)
    return table


def _plot(cfg: DictConfig, table: BenchmarkTable, out_dir: Path) -> Path | None:
    names = table.set_names
    set_name = cfg.plot.set or ("Set14" if "Set14" in names else names[0])
    scale = int(cfg.plot.scale or max(table.scales))
    return plot_psnr_vs_macs(table, set_name, scale, out_dir / "psnr_vs_macs.png")


def _log_wandb(cfg: DictConfig, table: BenchmarkTable, plot: Path | None) -> None:
    """With logger=wandb: the long table and the per-image scores as W&B Tables, and the plot."""
    loggers = [lg for lg in instantiate_dict(cfg.get("logger")) if hasattr(lg, "log_table")]
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(OmegaConf.masked_copy(cfg, list(LOGGED_OPTIONS)), resolve=True))
        for key, rows in (("benchmark/table", long_rows(table)), ("benchmark/per_image", image_rows(table))):
            columns = list(dict.fromkeys(k for row in rows for k in row))
            logger.log_table(key=key, columns=columns, data=[[row.get(c) for c in columns] for row in rows])
        if plot is not None:
            logger.log_image(key="benchmark/psnr_vs_macs", images=[str(plot)])
        logger.experiment.finish()


@entry_point("benchmark")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    run(cfg)


if __name__ == "__main__":
    main()
