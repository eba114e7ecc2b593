"""The fixed edge filters of EFDN (paper Sec. 3.1/3.3): Sobel-x, Sobel-y and Laplacian, as used by the EDBB edge
branches and the EG loss, and a helper computing the gradient maps of an image.

Not kornia.filters: its Sobel is sign-flipped, divided by 8 and replicate-padded and its 3x3 Laplacian is the
8-neighbour one (tests/test_library_conventions.py); the EDBB and the EG loss use the official code's kernels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

SOBEL_X = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
SOBEL_Y = torch.tensor([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
EDGE_FILTERS: dict[str, torch.Tensor] = {"sobel_x": SOBEL_X, "sobel_y": SOBEL_Y, "laplacian": LAPLACIAN}

# RGB -> gray weights. BT.601 is the default of `to_gray`; the official gradient-variance loss code
# (lusinlu/gradient-variance-loss, which the EFDN author says the EG loss is based on) uses MATLAB rgb2gray's
# rounded coefficients instead (they sum to 0.9999).
GRAY_BT601 = (0.299, 0.587, 0.114)
GRAY_MATLAB = (0.2989, 0.5870, 0.1140)
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def to_gray(img: torch.Tensor, weights: Sequence[float] = GRAY_BT601) -> torch.Tensor:
    """(N,3,H,W) RGB -> (N,1,H,W) luminance with ITU-R BT.601 weights (0.299, 0.587, 0.114) unless `weights`."""
    if img.shape[-3] == 1:
        return img
    w = img.new_tensor(tuple(weights)).view(3, 1, 1)
    return (img * w).sum(dim=-3, keepdim=True)


def filter_bank(names: Sequence[str]) -> torch.Tensor:
    """The named filters of `EDGE_FILTERS` stacked as conv2d weights of shape (len(names), 1, 3, 3)."""
    unknown = [n for n in names if n not in EDGE_FILTERS]
    if unknown or not names:
        raise ValueError(f"unknown edge filters {unknown or list(names)}; choose from {list(EDGE_FILTERS)}")
    return torch.stack([EDGE_FILTERS[n] for n in names]).unsqueeze(1)


def apply_filters(
    gray: torch.Tensor, bank: torch.Tensor, padding: int = 1, padding_mode: str = "zeros"
) -> torch.Tensor:
    """Convolve a one-channel image (N,1,H,W) with a filter bank (K,1,3,3) -> (N,K,H',W').

    `padding_mode` is "zeros" (torch's conv padding, as in the official GV loss) or a `F.pad` mode
    ("reflect", "replicate", "circular").
    """
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    bank = bank.to(gray)
    if padding_mode == "zeros" or padding == 0:
        return F.conv2d(gray, bank, padding=padding)
    return F.conv2d(F.pad(gray, (padding,) * 4, mode=padding_mode), bank)


def gradient_maps(
    img: torch.Tensor,
    padding: int = 1,
    *,
    padding_mode: str = "zeros",
    filters: Sequence[str] | None = None,
    gray_weights: Sequence[float] = GRAY_BT601,
) -> dict[str, torch.Tensor]:
    """Sobel-x, Sobel-y and Laplacian responses of the grayscale of `img` (N,C,H,W), each (N,1,H',W').

    `filters` selects a subset of `EDGE_FILTERS` (default: all three); `padding_mode` and `gray_weights` are
    passed to `apply_filters` and `to_gray`.
    """
    names = list(filters) if filters is not None else list(EDGE_FILTERS)
    out = apply_filters(to_gray(img, gray_weights), filter_bank(names), padding, padding_mode)
    return {name: out[:, i : i + 1] for i, name in enumerate(names)}
