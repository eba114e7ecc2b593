"""The fixed edge filters of EFDN (paper Sec. 3.1/3.3): Sobel-x, Sobel-y and Laplacian, as used by the EDBB edge
branches and the EG loss, and a helper computing the gradient maps of an image."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SOBEL_X = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
SOBEL_Y = torch.tensor([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
EDGE_FILTERS: dict[str, torch.Tensor] = {"sobel_x": SOBEL_X, "sobel_y": SOBEL_Y, "laplacian": LAPLACIAN}


def to_gray(img: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) RGB -> (N,1,H,W) luminance with ITU-R BT.601 weights (0.299, 0.587, 0.114)."""
    if img.shape[-3] == 1:
        return img
    w = img.new_tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    return (img * w).sum(dim=-3, keepdim=True)


def gradient_maps(img: torch.Tensor, padding: int = 1) -> dict[str, torch.Tensor]:
    """Sobel-x, Sobel-y and Laplacian responses of the grayscale of `img` (N,C,H,W), each (N,1,H',W')."""
    gray = to_gray(img)
    return {name: F.conv2d(gray, k.to(gray).view(1, 1, 3, 3), padding=padding) for name, k in EDGE_FILTERS.items()}
