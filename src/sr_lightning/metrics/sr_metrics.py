"""torchmetrics wrappers of :mod:`sr_lightning.metrics.functional`: data set mean of per-image Y PSNR / SSIM.

The states are a float64 sum of per-image scores and an image count, both reduced with ``sum`` across
processes, so the value computed on every rank is the mean over all images seen by all ranks (the papers'
"score each image, then average"), whatever the batch sizes and image sizes per rank.
Not torchmetrics' own PSNR / SSIM: they pool one MSE over all images and reflect-pad the SSIM window
(tests/test_metrics.py::test_library_defaults_give_other_numbers).

PSNR of an image identical to its reference is ``+inf`` (see :func:`psnr_y`), so the mean is then ``+inf``:
this is the mathematically correct mean and never NaN. ``compute()`` before any ``update()`` returns NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchmetrics import Metric

from sr_lightning.metrics.functional import NTIRE_BORDER, psnr_rgb_ntire, psnr_y, ssim_y

__all__ = ["PSNRRGB", "PSNRY", "SSIMY"]


class _MeanOfPerImageScores(Metric):
    """Mean over images of a per-image score ``fn(sr, hr, shave_border) -> (N,)``."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    score_sum: torch.Tensor
    count: torch.Tensor
    _F64_STATES = ("score_sum", "count")

    def __init__(self, shave: int, fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> None:
        super().__init__()
        if shave < 0:
            raise ValueError(f"shave must be >= 0, got {shave}")
        self.shave = int(shave)
        self._fn = fn
        self.last_scores: torch.Tensor | None = None
        self.add_state("score_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, sr: torch.Tensor, hr: torch.Tensor) -> None:
        """Add the per-image scores of a batch (NCHW in [0, 1]; all images of a batch share one size).

        The batch's scores stay readable as ``last_scores`` ((N,) float64, not a metric state), so that per-image
        tables need not compute them a second time.
        """
        scores = self._fn(sr.detach(), hr.detach(), self.shave)
        self.last_scores = scores
        self.score_sum += scores.sum().to(self.score_sum)
        self.count += scores.numel()

    def compute(self) -> torch.Tensor:
        """Mean per-image score (float64 scalar)."""
        return self.score_sum / self.count

    def _apply(self, fn: Callable, exclude_state: Sequence[str] = ()) -> Metric:
        """Follow device moves but keep the float64 states under ``module.to(dtype)``.

        torchmetrics casts states on ``.to(dtype)`` (e.g. Lightning's "16-true"/"bf16-true" precision converts
        the whole LightningModule), which would accumulate the sums in half precision.
        """
        this = super()._apply(fn, exclude_state=(*exclude_state, *self._F64_STATES))
        for key in self._F64_STATES:
            this._defaults[key] = this._defaults[key].to(this.device)
            setattr(this, key, getattr(this, key).to(this.device))
        return this


class PSNRY(_MeanOfPerImageScores):
    """Mean per-image PSNR (dB) on Y with ``shave`` border pixels removed (MATLAB protocol)."""

    def __init__(self, shave: int) -> None:
        super().__init__(shave, psnr_y)


class SSIMY(_MeanOfPerImageScores):
    """Mean per-image SSIM on Y with ``shave`` border pixels removed (MATLAB protocol)."""

    def __init__(self, shave: int) -> None:
        super().__init__(shave, ssim_y)


class PSNRRGB(_MeanOfPerImageScores):
    """Mean per-image RGB PSNR (dB) of the NTIRE efficient-SR challenge (uint8 RGB, ``shave`` = 4 border pixels at
    every scale, MSE pooled over the channels; :func:`psnr_rgb_ntire`). Not the papers' Y-channel metric."""

    def __init__(self, shave: int = NTIRE_BORDER) -> None:
        super().__init__(shave, psnr_rgb_ntire)
