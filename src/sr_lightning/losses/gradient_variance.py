"""Gradient-variance (GV) loss of Abrahamyan et al., "Gradient Variance Loss for Structure-Enhanced Image
Super-Resolution" (ICASSP 2022), with the filter set made configurable so that EFDN's EG loss (Wang, CVPRW 2022,
Sec. 3.3) can add the Laplacian.

Behaviour follows the official code (lusinlu/gradient-variance-loss, `GradientVariance`):
- SR and HR are converted to gray with MATLAB rgb2gray's coefficients (0.2989, 0.5870, 0.1140);
- each gray image is filtered by 3x3 kernels with zero padding 1 (same size out);
- the gradient maps are split into non-overlapping n x n patches (`nn.Unfold(n, stride=n)` there); rows/columns
  at the bottom/right that do not fill a whole patch are dropped, as unfold does;
- each patch's variance is the unbiased one, sum((g - mean)^2) / (n^2 - 1) (`torch.var`'s default there);
- per filter, the term is the mean squared difference of the SR and HR variance maps (`F.mse_loss`, mean over
  batch and patches); the loss is the sum of the per-filter terms.
The sign convention of the Sobel kernels does not matter: a variance is unchanged by negating the map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.ops.edges import GRAY_MATLAB, apply_filters, filter_bank, to_gray


def patch_variance(maps: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Unbiased variance of each non-overlapping `patch_size` x `patch_size` patch of `maps` (N,C,H,W).

    Returns (N, C, H // n, W // n). Trailing rows/columns that do not fill a patch are dropped (as
    `nn.Unfold(kernel_size=n, stride=n)` in the official GV code); maps smaller than one patch raise ValueError.
    """
    n = patch_size
    batch, channels, height, width = maps.shape
    if height < n or width < n:
        raise ValueError(f"gradient maps of size {height}x{width} are smaller than one {n}x{n} patch")
    h, w = height // n, width // n
    patches = maps[..., : h * n, : w * n].reshape(batch, channels, h, n, w, n)
    return patches.var(dim=(3, 5), correction=1)


class GradientVarianceLoss(nn.Module):
    """Sum over `filters` of MSE(patch-variance map of the filtered gray SR, same of HR).

    Args:
        patch_size: side n of the non-overlapping patches (official default 8). Images whose size is not a
            multiple of n lose their last H % n rows and W % n columns; images smaller than n raise ValueError.
        filters: names from `sr_lightning.ops.edges.EDGE_FILTERS` ("sobel_x", "sobel_y", "laplacian").
        gray_weights: RGB -> gray weights; default the official GV code's MATLAB rgb2gray coefficients.
        padding_mode: padding of the 3x3 filtering, "zeros" (official) or "reflect" / "replicate" / "circular".
    """

    def __init__(
        self,
        patch_size: int = 8,
        filters: Sequence[str] = ("sobel_x", "sobel_y"),
        gray_weights: Sequence[float] = GRAY_MATLAB,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        if int(patch_size) < 2:
            raise ValueError(f"patch_size must be >= 2 for an unbiased variance, got {patch_size}")
        self.patch_size = int(patch_size)
        self.filters = tuple(str(f) for f in filters)
        self.gray_weights = tuple(float(w) for w in gray_weights)
        self.padding_mode = padding_mode
        self.register_buffer("bank", filter_bank(self.filters), persistent=False)
        apply_filters(torch.zeros(1, 1, 3, 3), self.bank, padding_mode=padding_mode)  # validate padding_mode early

    def variance_maps(self, img: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) image -> (N, len(filters), H // n, W // n) patch variances of its gradient maps."""
        grads = apply_filters(to_gray(img, self.gray_weights), self.bank, padding=1, padding_mode=self.padding_mode)
        return patch_variance(grads, self.patch_size)

    def terms(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-filter GV terms {filter name: mean squared difference of the SR and HR variance maps}."""
        if sr.shape != hr.shape:
            raise ValueError(f"sr and hr shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
        v_sr, v_hr = self.variance_maps(sr), self.variance_maps(hr)
        return {name: F.mse_loss(v_sr[:, i], v_hr[:, i]) for i, name in enumerate(self.filters)}

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return torch.stack(list(self.terms(sr, hr).values())).sum()

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, filters={self.filters}, padding_mode={self.padding_mode!r}"
