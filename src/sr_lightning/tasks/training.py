"""A training run from start to finish, in named steps: `start_training` (resume, W&B, build, initial weights,
model sizes), then `Trainer.fit`, `exit_if_preempted`, and `finish_training` (summary, the best network, both weight
files, the test loop and its report)."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from sr_lightning.archs.forms import network_form, to_deploy_form
from sr_lightning.archs.optimize import optimize_for_inference
from sr_lightning.lightning.callbacks.preemption import preemption_exit_code
from sr_lightning.lightning.trainer import build
from sr_lightning.tasks.complexity import measure_counts, write_complexity
from sr_lightning.utils.instantiate import loggable_config
from sr_lightning.utils.report import report
from sr_lightning.utils.resume import find_resume_checkpoint, wandb_run_id
from sr_lightning.utils.sweep_summary import write_summary
from sr_lightning.utils.wandb_logging import finish_wandb_runs, group_sweep_jobs, log_summary
from sr_lightning.weights import init_weights_from, load_weights, save_weights

log = logging.getLogger(__name__)


@dataclass
class TrainingRun:
    """What `start_training` built, for `Trainer.fit` and `finish_training`."""

    cfg: DictConfig
    datamodule: L.LightningDataModule
    module: L.LightningModule
    trainer: L.Trainer
    out_dir: Path
    ckpt_path: Path | None
    complexity: dict[str, Any]
    sizes: dict[str, int] = field(default_factory=dict)


def continue_wandb_run(cfg: DictConfig, ckpt_path: Path | None) -> None:
    """A resumed run logs into the W&B run of the checkpoint."""
    run_id = wandb_run_id(ckpt_path) if ckpt_path is not None else None
    if run_id and cfg.get("logger") and "wandb" in cfg.logger:
        with open_dict(cfg):
            cfg.logger.wandb.id = run_id
            cfg.logger.wandb.resume = "allow"
        log.info("continuing W&B run %s", run_id)


def load_initial_weights(cfg: DictConfig, module: L.LightningModule) -> None:
    """``weights=`` (strict) and ``init_from=`` (upsampler re-initialised on a scale change)."""
    if cfg.get("weights"):
        log.info("initial weights: %s (%s)", cfg.weights, load_weights(module.net, cfg.weights))
    if cfg.get("init_from"):
        reinit = init_weights_from(module.net, cfg.init_from)
        log.info("initialised from %s%s", cfg.init_from, f"; re-initialised {reinit}" if reinit else "")


def log_model_sizes(cfg: DictConfig, run: TrainingRun) -> None:
    """Hyper-parameters and model sizes to the console and every logger."""
    dm, trainer, sizes = run.datamodule, run.trainer, run.sizes
    per_device = dm.per_device_batch_size(trainer.world_size) if dm.train_sets else None
    log.info("%s x%d: %d parameters as trained, %d deployed, %.2f G MACs (720p output); per-device batch %s",
             type(run.module.net).__name__, cfg.scale, sizes["num_params_train"], sizes["num_params"],
             sizes["macs_720p"] / 1e9, per_device)  # fmt: skip
    hparams = loggable_config(cfg)
    hparams.update(sizes, per_device_batch_size=per_device, world_size=trainer.world_size)
    model_sizes = {f"model/{k}": v for k, v in sizes.items()}
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)
        logger.log_metrics(model_sizes, step=0)
    log_summary(trainer.loggers, model_sizes)


def start_training(cfg: DictConfig) -> TrainingRun:
    """Seed, find the checkpoint to resume from, build datamodule / module / trainer, load initial weights and log
    the model sizes."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    ckpt_path = find_resume_checkpoint(cfg.get("resume"), cfg.get("ckpt_path"), out_dir)
    continue_wandb_run(cfg, ckpt_path)
    group_sweep_jobs(cfg)  # multirun jobs share one W&B group
    datamodule, module, trainer = build(cfg)
    module.meta = {"model": OmegaConf.to_container(cfg.model, resolve=True), "scale": int(cfg.scale)}
    load_initial_weights(cfg, module)
    # Counts only (meta device): the deploy form, which the test loop scores; complexity.json beside benchmark.json
    complexity = measure_counts(module.net, int(cfg.scale), train_net=module.net)
    sizes = {"num_params": complexity["params_deploy"], "num_params_train": complexity["params_train"],
             "macs_720p": complexity["macs_720p"]}  # fmt: skip
    run = TrainingRun(cfg, datamodule, module, trainer, out_dir, ckpt_path, complexity, sizes)
    log_model_sizes(cfg, run)
    return run


def exit_if_preempted(trainer: L.Trainer) -> None:
    """Pre-empted: ``last.ckpt`` is written; no test, no export; exit with the code the scheduler requeues on."""
    code = preemption_exit_code(trainer)
    if code is not None:
        log.warning("pre-empted at step %d: exiting with %d (resume with resume=auto)", trainer.global_step, code)
        sys.exit(code)


def best_checkpoint(trainer: L.Trainer) -> tuple[str, float | None]:
    """(path, score) of the best-by-validation checkpoint ("" and None when none was kept)."""
    ckpt_cb = next((cb for cb in trainer.checkpoint_callbacks if getattr(cb, "monitor", None)), None)
    score = getattr(ckpt_cb, "best_model_score", None)
    return getattr(ckpt_cb, "best_model_path", "") or "", float(score) if score is not None else None


def run_summary(cfg: DictConfig, run: TrainingRun, metrics: dict[str, float], best_psnr: float | None) -> dict:
    """The per-run ``summary.json`` (gathered by the sweep summary of multiruns)."""
    summary = {
        "status": "completed",
        "overrides": " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else "",
        **run.sizes,
        "val_psnr": best_psnr if best_psnr is not None else metrics.get("val/psnr"),
        "val_ssim": metrics.get("val/ssim"),
        "steps": run.trainer.global_step,
    }
    return summary


def save_final_weights(run: TrainingRun, best: str) -> dict[str, Any]:
    """The best checkpoint's network (every rank loads it), else the last, as ``weights/model.pth`` (as trained) and
    ``weights/deploy.pth`` (folded); the network is left folded. Returns the metadata written."""
    module, trainer = run.module, run.trainer
    if best:
        module.load_network_weights(best)
        log.info("final network: %s", best)
    meta = {**module.meta, "source": best or "final"}
    if trainer.is_global_zero:
        save_weights(module.net, run.out_dir / "weights" / "model.pth", {**meta, "form": network_form(module.net)})
    to_deploy_form(module.net)
    if trainer.is_global_zero:
        save_weights(module.net, run.out_dir / "weights" / "deploy.pth", {**meta, "form": "deploy"})
    return meta


def test_and_report(cfg: DictConfig, run: TrainingRun, best: str) -> dict[str, dict[str, Any]]:
    """The test loop on the deployed network, ``benchmark.json`` and ``complexity.json`` (rank 0); {} without sets."""
    if not run.datamodule.test_set_names:
        log.warning("test=true but there are no test sets (paths.benchmark_dir missing?): no test loop")
        return {}
    optimize_for_inference(run.module.net)  # the final weights are written: test the inference form
    run.trainer.test(run.module, datamodule=run.datamodule)
    results = run.module.test_results
    if run.trainer.is_global_zero:
        lr_sources = {name: run.datamodule.lr_source(name) for name in results}
        report(results, lr_sources, run.out_dir, cfg.scale, type(run.module.net).__name__, weights=best or "final",
               chop=bool(cfg.chop), num_params=run.sizes["num_params"],
               num_params_train=run.sizes["num_params_train"], form="deploy")  # fmt: skip
        write_complexity(run.complexity, run.out_dir)
    return results


def finish_training(cfg: DictConfig, run: TrainingRun) -> dict[str, float]:
    """After `Trainer.fit`: summary, final weights (both forms), test loop and report, end of the W&B run; returns the
    metrics (``val/psnr_best``: the kept checkpoint's score, what sweeps optimise; ``test/<set>/psnr``)."""
    metrics = {k: float(v) for k, v in run.trainer.callback_metrics.items()}
    best, best_psnr = best_checkpoint(run.trainer)
    if best_psnr is not None:
        metrics["val/psnr_best"] = best_psnr
    summary = run_summary(cfg, run, metrics, best_psnr)
    if run.trainer.is_global_zero:
        write_summary(run.out_dir, summary)
    meta = save_final_weights(run, best)
    results = test_and_report(cfg, run, best) if cfg.get("test") else {}
    metrics.update({f"test/{k}/psnr": v["psnr"] for k, v in results.items()})
    if results and run.trainer.is_global_zero:  # the sweep summary's per-set columns (deploy form)
        summary["test"] = {k: {"psnr": v["psnr"], "ssim": v["ssim"]} for k, v in results.items()}
        write_summary(run.out_dir, summary)
    finish_wandb_runs(cfg, run.trainer, run.out_dir / "weights", meta)  # weights artifact if asked; end of the run
    return metrics
