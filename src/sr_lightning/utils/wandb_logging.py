"""W&B plumbing of the train entry point: the group of sweep jobs, summary values, tables, the weights artifact and
the end of a run. Every function does nothing when no `WandbLogger` is among the loggers (or no `logger.wandb`)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

#: W&B refuses longer group names
MAX_GROUP_LENGTH = 128


def wandb_loggers(loggers: Iterable[Logger]) -> list[WandbLogger]:
    """The W&B loggers among `loggers`."""
    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


def sweep_group(sweep_dir: str | Path, log_dir: str | Path | None = None) -> str:
    """The W&B group of the jobs of one Hydra multirun: its sweep directory, relative to `log_dir` when inside it
    (``train/multiruns/2026-01-31_12-00-00``), cut to W&B's 128 characters from the left."""
    sweep = Path(sweep_dir)
    if log_dir is not None:
        with contextlib.suppress(ValueError):  # a sweep directory outside the log directory: named as given
            sweep = sweep.resolve().relative_to(Path(log_dir).resolve())
    return sweep.as_posix()[-MAX_GROUP_LENGTH:]


def group_sweep_jobs(cfg: DictConfig) -> None:
    """In a Hydra multirun, put every job into one W&B group named after the sweep directory (`sweep_group`),
    unless ``logger.wandb.group`` was set on the command line. Single runs keep the group of the logger config."""
    if not (HydraConfig.initialized() and cfg.get("logger") and "wandb" in cfg.logger):
        return
    hydra_cfg = HydraConfig.get()
    overridden = any(o.lstrip("+~").startswith("logger.wandb.group=") for o in hydra_cfg.overrides.task)
    if hydra_cfg.mode != RunMode.MULTIRUN or overridden:
        return
    group = sweep_group(hydra_cfg.sweep.dir, OmegaConf.select(cfg, "paths.log_dir"))
    with open_dict(cfg):
        cfg.logger.wandb.group = group
    log.info("W&B group of this sweep: %s", group)


@rank_zero_only  # other ranks' `experiment` is a dummy without `summary`
def log_summary(loggers: Iterable[Logger], values: Mapping[str, Any]) -> None:
    """Set run summary values (shown in the runs table and sweep plots, not only as history); rank 0 only."""
    for logger in wandb_loggers(loggers):
        logger.experiment.summary.update(dict(values))


@rank_zero_only
def log_rows(loggers: Iterable[Logger], key: str, rows: Sequence[Mapping[str, Any]], step: int | None = None) -> None:
    """Log `rows` (dicts; columns: every key, in order of appearance) as a W&B Table under `key`; rank 0 only."""
    if not rows:
        return
    columns = list(dict.fromkeys(k for row in rows for k in row))
    data = [[row.get(c) for c in columns] for row in rows]
    for logger in wandb_loggers(loggers):
        logger.log_table(key=key, columns=columns, data=data, step=step)


def log_weights_artifact(logger: WandbLogger, weights_dir: Path, metadata: Mapping[str, Any]) -> None:
    """Upload the files of `weights_dir` (``model.pth``: the best weights as trained, ``deploy.pth``: folded) as
    the artifact ``weights-<run id>`` of type "model"."""
    import wandb

    run = logger.experiment
    artifact = wandb.Artifact(f"weights-{run.id}", type="model", metadata=dict(metadata))
    artifact.add_dir(str(weights_dir))
    run.log_artifact(artifact, aliases=["latest", "best"])
    log.info("W&B artifact weights-%s: %s", run.id, ", ".join(sorted(p.name for p in weights_dir.iterdir())))


def finish_wandb_runs(cfg: DictConfig, trainer: L.Trainer, weights_dir: Path, metadata: Mapping[str, Any]) -> None:
    """End of a training job: with ``logger.wandb_artifacts.weights=true`` upload the weights files
    (`log_weights_artifact`), then finish the W&B run, so that the next job of a multirun starts its own run
    (Lightning's WandbLogger otherwise adopts the run still open)."""
    upload = bool(OmegaConf.select(cfg, "logger.wandb_artifacts.weights", default=False))
    for logger in wandb_loggers(trainer.loggers):
        if trainer.is_global_zero and upload and weights_dir.is_dir():
            log_weights_artifact(logger, weights_dir, metadata)
        if trainer.is_global_zero:
            logger.experiment.finish()


@contextmanager
def wandb_run_closed_on_error() -> Iterator[None]:
    """A job that raises finishes its open W&B run (marked failed: exit code 1), so the next job of a multirun in this
    process starts its own run instead of adopting it (a job that returns finishes it in `finish_wandb_runs`). A
    job that exits (``sys.exit``: the pre-emption exit 143) records its own exit code."""
    try:
        yield
    except BaseException as exc:
        wandb = sys.modules.get("wandb")  # only if this job used W&B at all
        if wandb is not None and getattr(wandb, "run", None) is not None:
            code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
            wandb.finish(exit_code=code)
        raise
