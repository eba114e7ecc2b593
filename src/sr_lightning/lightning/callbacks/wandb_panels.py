"""W&B dashboard panels: the same validation crops at every validation, as images and edge maps (the EFDN paper's
Fig. 1: Sobel-x, Sobel-y and Laplacian gradient maps), and the test loop's scores as W&B Tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from sr_lightning.lightning.samples import sample_strip
from sr_lightning.ops.edges import EDGE_FILTERS, apply_filters, filter_bank, gradient_maps
from sr_lightning.ops.imresize import bicubic_upscale
from sr_lightning.ops.pixels import quantize, to_uint8
from sr_lightning.utils.wandb_logging import log_rows, wandb_loggers

#: rows of a panel below the images: |response| of each EFDN edge filter (Sobel-x, Sobel-y, Laplacian)
MAP_ROWS = tuple(EDGE_FILTERS)
#: the HR quantile that maps to white in an edge map (the same divisor for bicubic, SR and HR of one crop)
MAP_QUANTILE = 0.99


@dataclass(frozen=True)
class Crop:
    """A fixed validation crop: the LR window and the matching HR window (`top`, `left` in HR pixels)."""

    name: str
    top: int
    left: int
    lr: torch.Tensor
    hr: torch.Tensor


def edge_energy(hr: torch.Tensor) -> torch.Tensor:
    """(H, W) |Sobel-x| + |Sobel-y| summed over the channels of the 8-bit values of `hr` (3, H, W): whole numbers,
    computed exactly in float64, so the crop it selects does not depend on the CPU's rounding."""
    values = quantize(hr)[:, None]  # (C, 1, H, W) of the integers 0..255
    bank = filter_bank(["sobel_x", "sobel_y"]).to(torch.float64)
    return apply_filters(values, bank, padding=1, padding_mode="replicate").abs().sum(dim=(0, 1))


def edge_rich_window(hr: torch.Tensor, size: int, step: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the `size` x `size` window of `hr` (3, H, W) with the most edge energy, its
    corner on multiples of `step` (the scale: the LR window is then exact); the first one in row-major order on ties.
    Sides are cut to the image (rounded down to multiples of `step`)."""
    H, W = hr.shape[-2:]
    h, w = min(size, H) // step * step, min(size, W) // step * step
    integral = F.pad(edge_energy(hr).cumsum(0).cumsum(1), (1, 0, 1, 0))  # exact: sums of whole numbers < 2**53
    sums = integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]
    sums = sums[::step, ::step]
    index = int(torch.argmax(sums.flatten()))  # first maximum
    return index // sums.shape[1] * step, index % sums.shape[1] * step, h, w


def select_crops(dataset: Any, num_crops: int, size: int) -> list[Crop]:
    """One edge-rich crop (`edge_rich_window`) from each of the first `num_crops` images of `dataset` (items
    ``{lr, hr, name}``): the same crops for the same data, whatever the network."""
    crops = []
    for i in range(min(num_crops, len(dataset))):
        item = dataset[i]
        lr, hr = item["lr"], item["hr"]
        s = hr.shape[-1] // lr.shape[-1]
        top, left, h, w = edge_rich_window(hr, size, s)
        lr_crop = lr[:, top // s : (top + h) // s, left // s : (left + w) // s]
        hr_crop = hr[:, top : top + h, left : left + w]
        crops.append(Crop(str(item.get("name", i)), top, left, lr_crop.clone(), hr_crop.clone()))
    return crops


def edge_panel(bicubic: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """(3, 4h, 3w) panel, columns bicubic | SR | HR; rows: the images, then |Sobel-x|, |Sobel-y| and |Laplacian| of
    their luminance (the EFDN EDBB / EG-loss filters, replicate-padded), each map row divided by the HR map's
    `MAP_QUANTILE` quantile (fixed per crop: maps are comparable across columns and validations)."""
    images = torch.stack([bicubic, sr, hr]).clamp(0, 1)
    side = max(hr.shape[-2:])
    rows = [sample_strip(images[0], images[1], images[2], max_side=side)]  # LR input already at HR size: scale 1
    maps = gradient_maps(images, padding_mode="replicate")
    for name in MAP_ROWS:
        m = maps[name].abs()
        white = torch.quantile(m[2].flatten(), MAP_QUANTILE).clamp_min(1e-6)
        m = (m / white).clamp(0, 1).expand(-1, 3, -1, -1)
        rows.append(sample_strip(m[0], m[1], m[2], max_side=side))
    return torch.cat(rows, dim=-2)


class WandbPanels(Callback):
    """With a W&B logger: at every validation (not the sanity check), an `edge_panel` of each of `num_crops` fixed
    validation crops (`select_crops`, `crop_size` HR pixels) under `key`; at the end of the test loop its per-set and
    per-image scores as the W&B Tables ``test/table`` and ``test/per_image``. Does nothing without a W&B logger.

    The panels are made while the first validation batch is done, i.e. from the weights being validated (EMA ones
    when EMA is on), whatever the order of the callbacks.
    """

    def __init__(self, num_crops: int = 4, crop_size: int = 96, key: str = "val/panels", test_tables: bool = True):
        if num_crops < 1 or crop_size < 8:
            raise ValueError(f"need num_crops >= 1 and crop_size >= 8, got {num_crops} and {crop_size}")
        self.num_crops = num_crops
        self.crop_size = crop_size
        self.key = key
        self.test_tables = test_tables
        self._crops: list[Crop] | None = None

    def _validation_set(self, trainer: L.Trainer) -> Any:
        dataset = getattr(getattr(trainer, "datamodule", None), "val_set", None)
        if dataset is None:
            loaders = trainer.val_dataloaders
            loader = loaders[0] if isinstance(loaders, (list, tuple)) and loaders else loaders
            dataset = getattr(loader, "dataset", None)
        return dataset

    def crops(self, trainer: L.Trainer) -> list[Crop]:
        """The fixed crops, selected at the first validation."""
        if self._crops is None:
            dataset = self._validation_set(trainer)
            self._crops = select_crops(dataset, self.num_crops, self.crop_size) if dataset is not None else []
        return self._crops

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        loggers = wandb_loggers(trainer.loggers)
        if batch_idx != 0 or dataloader_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if not loggers:
            return
        panels, captions = [], []
        for crop in self.crops(trainer):
            with torch.no_grad():
                sr = pl_module.super_resolve(crop.lr[None].to(pl_module.device))[0].float().cpu()
            scale = crop.hr.shape[-1] // crop.lr.shape[-1]
            bicubic = bicubic_upscale(crop.lr, scale)  # MATLAB bicubic, as the test loop's baseline
            panels.append(to_uint8(edge_panel(bicubic, sr, crop.hr)).permute(1, 2, 0).numpy())
            h, w = crop.hr.shape[-2:]
            captions.append(
                f"{crop.name} HR {h}x{w} at y={crop.top}, x={crop.left}: bicubic | SR | HR; "
                "rows: image, |Sobel-x|, |Sobel-y|, |Laplacian|"
            )
        for logger in loggers:
            logger.log_image(key=self.key, images=panels, caption=captions, step=trainer.global_step)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        results = getattr(pl_module, "test_results", None)
        if not (self.test_tables and results and trainer.is_global_zero):
            return
        net = getattr(pl_module, "net", pl_module)
        head = {"network": type(net).__name__, "scale": getattr(pl_module, "scale", None)}
        rows = [{**head, "set": name, **row} for name, row in results.items()]
        log_rows(trainer.loggers, "test/table", rows, step=trainer.global_step)
        images = [{**head, **row} for row in getattr(pl_module, "test_image_scores", [])]
        log_rows(trainer.loggers, "test/per_image", images, step=trainer.global_step)
