"""`python -m sr_lightning.test`: evaluate weights on benchmark sets; prints a Y-PSNR/SSIM table.

Examples:
    python -m sr_lightning.test model=efdn scale=4 weights=../shared/weights/official/efdn_x4_official.pth
    python -m sr_lightning.test weights=logs/train/runs/<run>/weights/model.pth test_sets=[Set5] chop=true
Writes `benchmark.json` and `complexity.json` (the network's counts, `sr_lightning.profiling`) into the Hydra run
directory (`hydra.run.dir=<dir>` to choose it). Exits non-zero, writing nothing, when there is nothing to evaluate:
`paths.benchmark_dir` missing, a requested set missing or empty, or no image scored. Every test image is
decode-checked before the first one is scored (bad files are listed).
"""

from __future__ import annotations

import copy
import logging

import hydra
import lightning as L
from omegaconf import DictConfig

from sr_lightning.archs.deploy import to_deploy_form
from sr_lightning.config import CONFIG_PATH, register_resolvers
from sr_lightning.profiling import measure_complexity, write_complexity_json
from sr_lightning.utils.instantiate import build
from sr_lightning.utils.report import NothingEvaluatedError, report, unevaluated_sets
from sr_lightning.weights import count_parameters, load_weights

log = logging.getLogger(__name__)
register_resolvers()


def evaluate(cfg: DictConfig) -> dict[str, dict]:
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
    folded = to_deploy_form(module.net)  # evaluate what is deployed (same outputs, faster)
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
        lr_sources = {name: datamodule.lr_source(name) for name in results}
        path = report(
            results,
            lr_sources,
            cfg.paths.output_dir,
            cfg.scale,
            type(module.net).__name__ + (" (x8 ensemble)" if module.ensemble else ""),
            weights=str(cfg.weights),
            weights_kind=kind,
            chop=bool(cfg.chop),
            ensemble=bool(module.ensemble),
            num_params=n_params,
        )
        log.info("wrote %s", path)
        complexity = measure_complexity(module.net, int(cfg.scale), runtime=False, train_net=train_form)
        log.info("wrote %s", write_complexity_json(complexity, cfg.paths.output_dir))  # counts only (meta device)
    return results


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


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="test")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    evaluate(cfg)


if __name__ == "__main__":
    main()
