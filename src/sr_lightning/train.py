"""`python -m sr_lightning.train`: fit a network, then run the benchmark test loop (`test=true`).

Examples:
    python -m sr_lightning.train                                   # EFDN x4 on the embedded sample photos
    python -m sr_lightning.train model=efdn scale=3 trainer.max_steps=100
    python -m sr_lightning.train data=shared_train scale=2 hardware=gpu
    python -m sr_lightning.train hydra.run.dir=logs/my_run resume=auto   # requeueable: continues logs/my_run if any

At the end of fitting, the best checkpoint's network (the EMA weights when EMA is on; folded if the run folded after
that checkpoint) is written as `weights/model.pth` (the form it was trained in) and `weights/deploy.pth` (deploy
form), and the test loop scores exactly that deploy-form network in float32.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from sr_lightning.archs.deploy import to_deploy_form
from sr_lightning.archs.reparam import network_form
from sr_lightning.config import CONFIG_PATH, register_resolvers
from sr_lightning.lightning.callbacks.preemption import preemption_exit_code
from sr_lightning.lightning.hydra_ddp import ddp_job_scope
from sr_lightning.profiling import measure_complexity, write_complexity_json
from sr_lightning.utils.instantiate import build, loggable_config
from sr_lightning.utils.report import report
from sr_lightning.utils.resume import find_resume_checkpoint, wandb_run_id
from sr_lightning.utils.run_lock import run_dir_lock
from sr_lightning.utils.sweep_summary import write_summary
from sr_lightning.utils.wandb_logging import (
    finish_wandb_runs,
    group_sweep_jobs,
    log_summary,
    wandb_run_closed_on_error,
)
from sr_lightning.weights import init_weights_from, load_weights, save_weights

log = logging.getLogger(__name__)
register_resolvers()


def _continue_wandb_run(cfg: DictConfig, ckpt_path: Path | None) -> None:
    """A resumed run logs into the W&B run of the checkpoint."""
    run_id = wandb_run_id(ckpt_path) if ckpt_path is not None else None
    if run_id and cfg.get("logger") and "wandb" in cfg.logger:
        with open_dict(cfg):
            cfg.logger.wandb.id = run_id
            cfg.logger.wandb.resume = "allow"
        log.info("continuing W&B run %s", run_id)


def train(cfg: DictConfig) -> dict:
    """Fit (and optionally test) from a composed config; returns the metrics dict."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    ckpt_path = find_resume_checkpoint(cfg.get("resume"), cfg.get("ckpt_path"), out_dir)
    _continue_wandb_run(cfg, ckpt_path)
    group_sweep_jobs(cfg)  # multirun jobs share one W&B group
    datamodule, module, trainer = build(cfg)
    module.meta = {"model": OmegaConf.to_container(cfg.model, resolve=True), "scale": int(cfg.scale)}
    if cfg.get("weights"):
        kind = load_weights(module.net, cfg.weights)
        log.info("initial weights: %s (%s)", cfg.weights, kind)
    if cfg.get("init_from"):
        reinit = init_weights_from(module.net, cfg.init_from)
        log.info("initialised from %s%s", cfg.init_from, f"; re-initialised {reinit}" if reinit else "")
    # Counts only (meta device): the deploy form, which the test loop scores; complexity.json beside benchmark.json
    complexity = measure_complexity(module.net, int(cfg.scale), runtime=False, train_net=module.net)
    sizes = {
        "num_params": complexity["params_deploy"],  # the deploy form, next to its MACs
        "num_params_train": complexity["params_train"],  # the network as built for training
        "macs_720p": complexity["macs_720p"],
    }
    per_device = datamodule.per_device_batch_size(trainer.world_size) if datamodule.train_sets else None
    log.info(
        "%s x%d: %d parameters as trained, %d deployed, %.2f G MACs (720p output); per-device batch %s",
        type(module.net).__name__,
        cfg.scale,
        sizes["num_params_train"],
        sizes["num_params"],
        sizes["macs_720p"] / 1e9,
        per_device,
    )
    hparams = loggable_config(cfg)
    hparams.update(sizes, per_device_batch_size=per_device, world_size=trainer.world_size)
    model_sizes = {f"model/{k}": v for k, v in sizes.items()}
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)
        logger.log_metrics(model_sizes, step=0)
    log_summary(trainer.loggers, model_sizes)

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)  # files are data
    code = preemption_exit_code(trainer)
    if code is not None:  # pre-empted: last.ckpt is written; no test, no export; the scheduler requeues
        log.warning("pre-empted at step %d: exiting with %d (resume with resume=auto)", trainer.global_step, code)
        sys.exit(code)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    ckpt_cb = next((cb for cb in trainer.checkpoint_callbacks if getattr(cb, "monitor", None)), None)  # best by val
    best = getattr(ckpt_cb, "best_model_path", "") or ""
    best_psnr = getattr(ckpt_cb, "best_model_score", None)
    if best_psnr is not None:  # what sweeps optimise (optimized_metric: val/psnr_best): the kept checkpoint's score
        metrics["val/psnr_best"] = float(best_psnr)
    if trainer.is_global_zero:  # per-run summary, gathered by the sweep summary callback of multiruns
        summary = {
            "status": "completed",
            "overrides": " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else "",
            **sizes,
            "val_psnr": float(best_psnr) if best_psnr is not None else metrics.get("val/psnr"),
            "val_ssim": metrics.get("val/ssim"),
            "steps": trainer.global_step,
        }
        if cfg.get("paper") is not None:  # reference numbers of an experiment config (the Table-3 ablation)
            summary["paper"] = OmegaConf.to_container(cfg.paper, resolve=True)
        write_summary(out_dir, summary)

    # The final network: the best checkpoint's (every rank loads it), else the weights training ended with.
    if best:
        module.load_network_weights(best)
        log.info("final network: %s", best)
    meta = {**module.meta, "source": best or "final"}
    if trainer.is_global_zero:  # weights files loadable with `weights=<file>`: as trained, and deployed
        save_weights(module.net, out_dir / "weights" / "model.pth", {**meta, "form": network_form(module.net)})
    to_deploy_form(module.net)
    if trainer.is_global_zero:
        save_weights(module.net, out_dir / "weights" / "deploy.pth", {**meta, "form": "deploy"})
    if cfg.get("test") and not datamodule.test_set_names:
        log.warning("test=true but there are no test sets (paths.benchmark_dir missing?): no test loop")
    elif cfg.get("test"):
        trainer.test(module, datamodule=datamodule)
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
                num_params=sizes["num_params"],
                num_params_train=sizes["num_params_train"],
                form="deploy",
            )
            log.info("wrote %s", write_complexity_json(complexity, out_dir))
        metrics.update({f"test/{k}/psnr": v["psnr"] for k, v in results.items()})
        if trainer.is_global_zero:  # the sweep summary's per-set columns (deploy form)
            summary["test"] = {k: {"psnr": v["psnr"], "ssim": v["ssim"]} for k, v in results.items()}
            write_summary(out_dir, summary)
    finish_wandb_runs(cfg, trainer, out_dir / "weights", meta)  # weights artifact if asked; end of the W&B run
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns `optimized_metric` (default: the last validation PSNR) for sweepers."""
    # one run at a time in a run directory (a second one exits here); the next job of a multirun in this process
    # starts its own DDP processes and W&B run
    with run_dir_lock(HydraConfig.get().runtime.output_dir), ddp_job_scope(), wandb_run_closed_on_error():
        log.info("output dir: %s", HydraConfig.get().runtime.output_dir)
        metrics = train(cfg)
    name = cfg.get("optimized_metric", "val/psnr")
    if name not in metrics and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise KeyError(f"optimized_metric={name!r} was not produced (no validation ran?); have: {sorted(metrics)}")
    return metrics.get(name)


if __name__ == "__main__":
    main()
