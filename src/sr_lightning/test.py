"""`python -m sr_lightning.test`: evaluate weights on benchmark sets; prints a Y-PSNR/SSIM table.

Examples:
    python -m sr_lightning.test model=efdn scale=4 weights=../shared/weights/official/efdn_x4_official.pth
    python -m sr_lightning.test weights=logs/train/runs/<run>/weights/model.pth test_sets=[Set5] chop=true
Writes `benchmark.json` into the Hydra run directory (`hydra.run.dir=<dir>` to choose it).
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from sr_lightning.archs.deploy import to_deploy_form
from sr_lightning.config import conf_dir, register_resolvers
from sr_lightning.utils.instantiate import build
from sr_lightning.utils.report import report
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
    kind = load_weights(module.net, cfg.weights)
    n_params = count_parameters(module.net)  # as loaded (the papers' counts), before folding
    folded = to_deploy_form(module.net)  # evaluate what is deployed (same outputs, faster)
    log.info("loaded %s (%s); folded for inference: %s", cfg.weights, kind, folded)
    trainer.test(module, datamodule=datamodule)
    results = module.test_results
    if trainer.is_global_zero:  # under DDP every rank holds the synchronised results; rank 0 reports
        lr_sources = {name: datamodule.lr_source(name) for name in results}
        path = report(
            results,
            lr_sources,
            cfg.paths.output_dir,
            cfg.scale,
            type(module.net).__name__,
            weights=str(cfg.weights),
            weights_kind=kind,
            chop=bool(cfg.chop),
            num_params=n_params,
        )
        log.info("wrote %s", path)
    return results


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="test")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    evaluate(cfg)


if __name__ == "__main__":
    main()
