"""The benchmark test loop of `SRModule`: per-set means and per-image scores, each image scored exactly once.

Per test set and per output kind (the network's SR, and MATLAB-bicubic upscaling of the same LR), the papers'
Y-PSNR / Y-SSIM (and, with ``ntire_psnr``, the NTIRE challenge's RGB PSNR) are torchmetrics Metrics reduced across
processes. Every image's scores are also kept (``test_image_scores``) and gathered from all ranks at the end; the
datamodule's evaluation sampler gives each image to exactly one rank, so the table has each image once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from sr_lightning.metrics import PSNRRGB, PSNRY, SSIMY
from sr_lightning.ops.imresize import bicubic_upscale


class TestLoopMixin(L.LightningModule):
    """Mixed into `SRModule`. Expects ``scale``, ``bicubic_baseline``, ``ntire_psnr``, ``ensemble``, ``image_dir``
    attributes and a ``super_resolve(lr, ensemble=...)`` method."""

    scale: int
    bicubic_baseline: bool
    ntire_psnr: bool
    ensemble: bool
    image_dir: str | None

    def _init_test_loop(self) -> None:
        self.test_metrics = nn.ModuleDict()
        self.test_set_names: list[str] = []
        #: filled by the test loop: {set name: {psnr, ssim, images, [psnr_rgb], [bicubic_psnr, bicubic_ssim, ...]}}
        self.test_results: dict[str, dict[str, float]] = {}
        #: one row per image, all ranks: {set, image, psnr, ssim, [psnr_rgb], [bicubic_psnr, ...]}
        self.test_image_scores: list[dict[str, Any]] = []

    def _test_metric_set(self) -> nn.ModuleDict:
        metrics: dict[str, nn.Module] = {"psnr": PSNRY(shave=self.scale), "ssim": SSIMY(shave=self.scale)}
        if self.ntire_psnr:
            metrics["psnr_rgb"] = PSNRRGB()
        return nn.ModuleDict(metrics)

    def on_test_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        loaders = self.trainer.test_dataloaders
        n = len(loaders) if isinstance(loaders, (list, tuple)) else 1
        names = list(getattr(dm, "test_set_names", []) or [f"test{i}" for i in range(n)])
        self.test_set_names = names
        kinds = ["sr", "bicubic"] if self.bicubic_baseline else ["sr"]
        self.test_metrics = nn.ModuleDict(
            {f"{i}_{kind}": self._test_metric_set() for i in range(len(names)) for kind in kinds}
        ).to(self.device)
        self.test_image_scores = []

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        lr, hr = batch["lr"], batch["hr"]
        outputs = {"sr": self.super_resolve(lr, ensemble=self.ensemble)}
        if self.bicubic_baseline:
            outputs["bicubic"] = bicubic_upscale(lr, self.scale)
        set_name = self.test_set_names[dataloader_idx]
        names = list(batch.get("name") or [f"{batch_idx}_{j}" for j in range(lr.shape[0])])
        rows: list[dict[str, Any]] = [{"set": set_name, "image": name} for name in names]
        for kind, out in outputs.items():
            for key, metric in self.test_metrics[f"{dataloader_idx}_{kind}"].items():
                metric.update(out, hr)
                column = key if kind == "sr" else f"{kind}_{key}"
                for row, value in zip(rows, metric.last_scores.tolist(), strict=True):
                    row[column] = value
        self.test_image_scores.extend(rows)
        if self.image_dir:
            from sr_lightning.data.io import save_image

            for name, img in zip(names, outputs["sr"], strict=True):
                save_image(Path(self.image_dir) / set_name / f"{name}.png", img.float())

    def on_test_epoch_end(self) -> None:
        results: dict[str, dict[str, float]] = {}
        for i, name in enumerate(self.test_set_names):
            sr = self.test_metrics[f"{i}_sr"]
            row: dict[str, float] = {key: float(metric.compute()) for key, metric in sr.items()}
            row["images"] = synced_count(sr["psnr"])
            if self.bicubic_baseline:
                row.update({f"bicubic_{k}": float(m.compute()) for k, m in self.test_metrics[f"{i}_bicubic"].items()})
            results[name] = row
        self.test_results = results
        self.test_image_scores = _gather_rows(self.test_image_scores, self.test_set_names)
        # Values are already synchronised across processes by the metrics; sent to the loggers directly
        # (self.log here would repeat every set under every dataloader in Lightning's summary table).
        flat = {f"test/{n}/{k}": v for n, row in results.items() for k, v in row.items() if k != "images"}
        for logger in self.loggers:
            logger.log_metrics(flat, step=self.global_step)


def synced_count(metric: PSNRY | SSIMY) -> int:
    """Number of images a mean-of-scores metric has seen, summed over all processes."""
    with metric.sync_context():
        return int(metric.count.item())


def _gather_rows(rows: list[dict[str, Any]], set_order: list[str]) -> list[dict[str, Any]]:
    """Every rank's per-image rows on every rank, ordered by test set then image name."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, rows)
        rows = [row for part in parts for row in part]
    order = {name: i for i, name in enumerate(set_order)}
    return sorted(rows, key=lambda r: (order.get(r["set"], len(order)), str(r["image"])))
