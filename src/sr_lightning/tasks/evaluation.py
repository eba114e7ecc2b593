"""Evaluate one weights file in the configured network on the test sets (the `test` entry point): the test loop,
``benchmark.json`` and ``complexity.json``."""

from __future__ import annotations

import copy
import logging

import lightning as L
from omegaconf import DictConfig

from sr_lightning.archs.forms import network_form, to_deploy_form
from sr_lightning.archs.optimize import optimize_for_inference
from sr_lightning.lightning.trainer import build
from sr_lightning.tasks.complexity import measure_counts, write_complexity
from sr_lightning.utils.report import NothingEvaluatedError, report, unevaluated_sets
from sr_lightning.weights import count_parameters, load_weights

log = logging.getLogger(__name__)


def evaluate_weights(cfg: DictConfig) -> dict[str, dict]:
    """Load `cfg.weights` into the configured network and run the test loop; returns per-set results."""
    if not cfg.get("weights"):
        raise ValueError(
            "`weights=<file>` is required: a Lightning checkpoint, a weights file or an official checkpoint"
        )
    datamodule, module, trainer = build(cfg)
    _require_test_sets(datamodule, cfg)
    train_form = copy.deepcopy(module.net)  # the configured architecture, before a deploy-form file folds it
    kind = load_weights(module.net, cfg.weights)
    n_params = count_parameters(module.net)  # as loaded (the papers' counts), before folding
    n_params_form = network_form(module.net)
    folded = to_deploy_form(module.net)  # evaluate what is deployed (same outputs, faster)
    counts = measure_counts(module.net, int(cfg.scale), train_net=train_form)  # the papers' network, not the folds
    folded.update(optimize_for_inference(module.net))
    log.info("loaded %s (%s); folded for inference: %s", cfg.weights, kind, folded)
    trainer.test(module, datamodule=datamodule)
    results = module.test_results
    empty = unevaluated_sets(results, datamodule.test_set_names)
    if not results or empty:
        raise NothingEvaluatedError(
            f"nothing was evaluated for test set(s) {', '.join(empty or datamodule.test_set_names)}: "
            "no image was scored; benchmark.json not written"
        )
    if trainer.is_global_zero:  # under DDP every rank holds the synchronised results; rank 0 reports
        _report(cfg, datamodule, module, results, kind, (n_params, n_params_form))
        write_complexity(counts, cfg.paths.output_dir)
    return results


def _report(
    cfg: DictConfig,
    datamodule: L.LightningDataModule,
    module: L.LightningModule,
    results: dict,
    kind: str,
    params: tuple[int, str],
) -> None:
    """``benchmark.json`` and the printed table of a `evaluate_weights` run."""
    lr_sources = {name: datamodule.lr_source(name) for name in results}
    model = type(module.net).__name__ + (" (x8 ensemble)" if module.ensemble else "")
    path = report(results, lr_sources, cfg.paths.output_dir, cfg.scale, model, weights=str(cfg.weights),
                  weights_kind=kind, chop=bool(cfg.chop), ensemble=bool(module.ensemble), num_params=params[0],
                  num_params_form=params[1])  # fmt: skip
    log.info("wrote %s", path)


def _require_test_sets(datamodule: L.LightningDataModule, cfg: DictConfig) -> None:
    """Unlike training (which skips them with a warning), the test entry point fails when a requested set is absent
    or when there is no set at all: a benchmark of nothing must not look like a finished benchmark."""
    skipped = list(getattr(datamodule, "skipped_test_sets", []))
    if skipped:
        root = getattr(datamodule, "benchmark_dir", None)
        raise FileNotFoundError(
            f"benchmark_dir {root} not found: cannot evaluate test set(s) {', '.join(skipped)} "
            f"(set paths.benchmark_dir=<dir holding {skipped[0]}/HR> or SR_SHARED_DIR)"
        )
    if not getattr(datamodule, "test_set_names", []):
        requested = list(cfg.get("test_sets") or [])
        raise NothingEvaluatedError(
            f"nothing to evaluate: test_sets={requested} and the data config has no test sets of its own; "
            "pass test_sets=[Set5,...]"
        )
