"""Where kornia's conventions differ from the papers' protocol, on real images: why ops/edges.py and ops/imresize.py
keep their own code (kornia's SSIM does match and is used: tests/test_metrics.py; its full-range Y: same file)."""

from __future__ import annotations

from pathlib import Path

import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sr_lightning.data.sample import sample_files
from sr_lightning.ops.edges import EDGE_FILTERS, gradient_maps


def _camera() -> torch.Tensor:
    """scikit-image's `camera` (a real 8-bit grayscale photograph) as (1, 1, H, W) float64 integer values 0..255."""
    path = next(p for p in sample_files("heldout") if p.name == "camera.png")
    gray = np.asarray(Image.open(path).convert("L"))
    return torch.from_numpy(gray.astype(np.float64))[None, None]


def test_kornia_sobel_is_sign_flipped_normalised_and_replicate_padded():
    """EFDN's Sobel (ops/edges.py, the official code's) = -8 x kornia's normalised `spatial_gradient`, zero-padded.

    Integer-valued float64 input and power-of-two kernel scalings: every value is an exact integer or integer / 8, so
    the relations below hold exactly, in any summation order.
    """
    img = _camera()
    ours = gradient_maps(img, gray_weights=(1.0, 0.0, 0.0))  # a 1-channel image is its own gray
    ours_x, ours_y = ours["sobel_x"][:, 0], ours["sobel_y"][:, 0]
    k_norm = kornia.filters.spatial_gradient(img, "sobel", normalized=True)[:, 0]  # kornia's default
    k_raw = kornia.filters.spatial_gradient(img, "sobel", normalized=False)[:, 0]
    inner = (slice(None), slice(1, -1), slice(1, -1))
    assert torch.equal(k_raw[:, 0][inner], -ours_x[inner]) and torch.equal(k_raw[:, 1][inner], -ours_y[inner])
    assert torch.equal(k_norm * 8, k_raw)
    # kornia's default differs by a factor -1/8 everywhere an edge is (a real photograph has many)
    assert (ours_x[inner] != 0).float().mean() > 0.5
    assert not torch.equal(k_norm[:, 0][inner], ours_x[inner])
    # borders: kornia replicates the edge pixel, the official code (and the EDBB's conv) pads zeros
    assert not torch.equal(k_raw[:, 0][..., 0, :], -ours_x[..., 0, :])
    # kornia.filters.sobel is the gradient magnitude, not the signed maps the EDBB branches and the EG loss use
    mag = kornia.filters.sobel(img, normalized=False, eps=0.0)
    assert (mag >= 0).all() and (ours_x < 0).any()


def test_kornia_laplacian_is_the_eight_neighbour_kernel():
    """EFDN's Laplacian is the 4-neighbour [[0,1,0],[1,-4,1],[0,1,0]]; kornia's 3x3 is the 8-neighbour one."""
    img = _camera()
    ours = gradient_maps(img, filters=("laplacian",), gray_weights=(1.0, 0.0, 0.0))["laplacian"]
    k = kornia.filters.laplacian(img, 3, normalized=False)
    eight = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    eight[..., 1, 1] = -8.0
    inner = (..., slice(1, -1), slice(1, -1))
    # exact: integer values, 9 integer products
    four = EDGE_FILTERS["laplacian"].double()[None, None]
    assert torch.equal(k[inner], F.conv2d(img, eight)) and torch.equal(ours[inner], F.conv2d(img, four))
    diff = (k[inner] - ours[inner]).abs()
    assert (diff > 0).float().mean() > 0.5 and diff.max() > 100  # gray levels: a different filter, not rounding


@pytest.mark.shared
def test_kornia_resize_is_not_matlab_imresize(benchmark_dir: Path):
    """kornia's bicubic resize (torch's a = -0.75 kernel, Gaussian anti-aliasing) does not give the official MATLAB
    LR files, which ops/imresize.py reproduces bit for bit (tests/test_imresize.py)."""
    s = 4
    hr = np.asarray(Image.open(benchmark_dir / "Set5" / "HR" / "baby.png").convert("RGB"))
    h, w = hr.shape[0] - hr.shape[0] % s, hr.shape[1] - hr.shape[1] % s
    official = np.asarray(Image.open(benchmark_dir / "Set5" / "LR_bicubic" / "X4" / "babyx4.png").convert("RGB"))
    x = torch.from_numpy(np.array(hr[:h, :w])).permute(2, 0, 1)[None].double()
    for antialias in (True, False):
        out = kornia.geometry.transform.resize(x, (h // s, w // s), interpolation="bicubic", antialias=antialias)
        out8 = torch.floor(out + 0.5).clamp(0, 255)[0].permute(1, 2, 0).numpy()
        diff = np.abs(out8 - official)
        # whole gray levels in a third of the values or more: an interpolation difference, not a rounding one
        assert (diff > 0).mean() > 1 / 3 and diff.max() >= 5, (antialias, (diff > 0).mean(), diff.max())
