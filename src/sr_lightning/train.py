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

from sr_lightning.process import set_process_defaults

set_process_defaults()  # before torch allocates: see sr_lightning/process.py

import logging

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sr_lightning.config import entry_point
from sr_lightning.lightning.hydra_ddp import ddp_job_scope
from sr_lightning.tasks.training import exit_if_preempted, finish_training, start_training
from sr_lightning.utils.run_lock import run_dir_lock
from sr_lightning.utils.wandb_logging import wandb_run_closed_on_error

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and optionally test) from a composed config; returns the metrics dict."""
    run = start_training(cfg)
    run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=run.ckpt_path, weights_only=True)  # files: data
    exit_if_preempted(run.trainer)
    return finish_training(cfg, run)


@entry_point("train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns `optimized_metric` (default: the last validation PSNR) for sweepers."""
    # one run at a time in a run directory (a second one exits here); the next job of a multirun in this process
    # starts its own DDP processes and W&B run
    with run_dir_lock(HydraConfig.get().runtime.output_dir), ddp_job_scope(), wandb_run_closed_on_error():
        log.info("output dir: %s", HydraConfig.get().runtime.output_dir)
        metrics = train(cfg)
    name, hydra_cfg = cfg.get("optimized_metric", "val/psnr"), HydraConfig.get()
    # only a sweeper that optimizes (Optuna) needs the metric; a grid sweep of runs too short to validate goes on
    # (its summary says "no validation ran")
    grid = hydra_cfg.sweeper._target_ == "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
    optimizing = hydra_cfg.mode == RunMode.MULTIRUN and not grid
    if name not in metrics and optimizing:
        raise KeyError(
            f"optimized_metric={name!r} was not produced: no validation ran (trainer.max_steps below "
            f"stage.val_every_n_steps={cfg.stage.val_every_n_steps}?) or no such metric; have: {sorted(metrics)}"
        )
    return metrics.get(name)


if __name__ == "__main__":
    main()
