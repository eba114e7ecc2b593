"""`python -m sr_lightning.train`: fit a network, then run the benchmark test loop (`test=true`).

Examples:
    python -m sr_lightning.train                                   # EFDN x4 on the embedded sample photos
    python -m sr_lightning.train model=efdn scale=3 trainer.max_steps=100
    python -m sr_lightning.train data=shared_train scale=2 hardware=gpu
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from sr_lightning.config import conf_dir, register_resolvers
from sr_lightning.utils.complexity import count_macs
from sr_lightning.utils.instantiate import build, loggable_config
from sr_lightning.utils.report import report
from sr_lightning.weights import count_parameters, init_weights_from, load_weights, save_weights

log = logging.getLogger(__name__)
register_resolvers()


def train(cfg: DictConfig) -> dict:
    """Fit (and optionally test) from a composed config; returns the metrics dict."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule, module, trainer = build(cfg)
    if cfg.get("weights"):
        kind = load_weights(module.net, cfg.weights)
        log.info("initial weights: %s (%s)", cfg.weights, kind)
    if cfg.get("init_from"):
        reinit = init_weights_from(module.net, cfg.init_from)
        log.info("initialised from %s%s", cfg.init_from, f"; re-initialised {reinit}" if reinit else "")
    n_params = count_parameters(module.net)
    macs = count_macs(module.net, int(cfg.scale))
    log.info(
        "%s x%d: %d parameters, %.2f G MACs (720p output)", type(module.net).__name__, cfg.scale, n_params, macs / 1e9
    )
    hparams = loggable_config(cfg)
    hparams.update(num_params=n_params, macs_720p=macs)
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)
        logger.log_metrics({"model/num_params": n_params, "model/macs_720p": macs}, step=0)

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    out_dir = Path(cfg.paths.output_dir)
    ckpt_cb = trainer.checkpoint_callback
    best_psnr = getattr(ckpt_cb, "best_model_score", None)
    if trainer.is_global_zero:  # per-run summary, gathered by the sweep summary callback of multiruns
        summary = {
            "overrides": " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else "",
            "num_params": n_params,
            "macs_720p": macs,
            "val_psnr": float(best_psnr) if best_psnr is not None else metrics.get("val/psnr"),
            "val_ssim": metrics.get("val/ssim"),
            "steps": trainer.global_step,
        }
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    best = ckpt_cb.best_model_path if ckpt_cb else ""
    if cfg.get("test"):
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
        results = module.test_results
        if trainer.is_global_zero:
            lr_sources = {name: datamodule.lr_source(name) for name in results}
            report(
                results,
                lr_sources,
                out_dir,
                cfg.scale,
                type(module.net).__name__,
                weights=best or "final",
                chop=bool(cfg.chop),
                num_params=n_params,
            )
        metrics.update({f"test/{k}/psnr": v["psnr"] for k, v in results.items()})
    # A plain weights file of the tested (best) network, loadable with `weights=<file>`.
    if trainer.is_global_zero:
        meta = {"model": OmegaConf.to_container(cfg.model, resolve=True), "scale": int(cfg.scale)}
        save_weights(module.net, out_dir / "weights" / "model.pth", meta)
    return metrics


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the validation PSNR for sweepers."""
    log.info("output dir: %s", HydraConfig.get().runtime.output_dir)
    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric", "val/psnr"))


if __name__ == "__main__":
    main()
