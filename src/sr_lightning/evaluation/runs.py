"""Score one method on the benchmark sets through the Lightning test loop (one process or DDP, each image once)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from sr_lightning.archs.forms import to_deploy_form
from sr_lightning.archs.optimize import optimize_for_inference
from sr_lightning.data.benchmark import BenchmarkDataset
from sr_lightning.evaluation.entries import Method, TestSet
from sr_lightning.inference.loading import network_of
from sr_lightning.lightning.trainer import instantiate_trainer

log = logging.getLogger(__name__)


@dataclass
class MethodResult:
    """A method's scores: per set (``sets[name]`` = the test loop's row) and per image."""

    method: Method
    sets: dict[str, dict[str, Any]]
    images: list[dict[str, Any]]
    lr_sources: dict[str, str] = field(default_factory=dict)
    is_global_zero: bool = True


def load_method_network(method: Method, optimize: bool = True) -> nn.Module:
    """The method's network with its weights: the default inference path (`optimize_for_inference`: what is deployed,
    same scores) or, ``optimize=False``, the deploy form (what the complexity counts describe)."""
    net = network_of(method.detected)
    folded = optimize_for_inference(net) if optimize else to_deploy_form(net)
    log.info("%s: %s (%s), x%d, folded %s", method.column, method.weights, method.detected.kind, method.scale, folded)
    return net


def evaluate_method(cfg: DictConfig, method: Method, sets: list[TestSet], image_dir: Path | None) -> MethodResult:
    """Run the test loop of `cfg.module` / `cfg.trainer` for `method` on `sets` at the method's scale."""
    scale = method.scale
    datasets = {
        s.name: BenchmarkDataset(s.root, s.name, scale, cache=cfg.data.cache, cache_dir=cfg.data.cache_dir)
        for s in sets
    }
    datamodule = instantiate(cfg.data, test=datasets, test_sets=[], scale=scale)
    module = instantiate(
        cfg.module,
        net=load_method_network(method),
        scale=scale,
        chop=method.variant.chop,
        ensemble=method.variant.ensemble,
        image_dir=str(image_dir) if image_dir else None,
    )
    trainer = instantiate_trainer(cfg.trainer, callbacks=[], logger=False)
    trainer.test(module, datamodule=datamodule, verbose=False)
    return MethodResult(
        method=method,
        sets=module.test_results,
        images=module.test_image_scores,
        lr_sources={name: datamodule.lr_source(name) for name in module.test_results},
        is_global_zero=trainer.is_global_zero,
    )
