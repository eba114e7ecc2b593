"""MATLAB-exact bicubic ``imresize`` for torch tensors (CPU/GPU, batched).

Follows MATLAB ``imresize(A, scale, 'bicubic')`` (Image Processing Toolbox, ``contributions`` +
``imresizemex``):

- Keys cubic kernel with a = -0.5, support [-2, 2].
- Downscaling with antialiasing uses ``h(x) = s * cubic(s * x)`` with the kernel width widened to ``4 / s``.
- Output pixel ``x`` (1-based) maps to input coordinate ``u = x / s + 0.5 * (1 - 1 / s)``; taps
  ``floor(u - width / 2) + (0 .. ceil(width) + 1)``; weights normalised to sum to 1 per output pixel.
- Out-of-range taps take the edge pixel (``padding="replicate"``, the default). The ``contributions`` source
  of MATLAB's imresize mirrors them instead (``aux = [1:n, n:-1:1]``, available as ``padding="symmetric"``),
  but the official Set5/Set14 LR_bicubic pngs (SelfExSR release) match edge replication on 100% of pixels
  at x2/x3/x4, while mirroring differs on ~0.7% of pixels, all within 1 LR pixel of the border.
- Dimensions are resized one at a time, the one with the smallest scale first (ties: height first); for uint8
  input each 1-D pass is rounded back to uint8 (round half away from zero, saturate) like MATLAB does.
- Output size is ``ceil(n * s)`` when a scale is given.

Weights are computed in float64; the uint8 path (and float64 input) is evaluated in float64.
No library reproduces MATLAB's resize (PIL, OpenCV, torch and kornia use other kernels or anti-aliasing; kornia's:
tests/test_library_conventions.py), and the benchmark LR images are MATLAB's.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from sr_lightning.ops.pixels import to_float, to_uint8

__all__ = ["imresize", "bicubic_upscale", "modcrop", "cubic_kernel"]


def cubic_kernel(x: torch.Tensor) -> torch.Tensor:
    """Keys (1981) cubic convolution kernel with a = -0.5, as in MATLAB's ``cubic``."""
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def _contributions_cpu(
    in_len: int, out_len: int, scale: float, antialias: bool, padding: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (indices [out, P] int64 0-based, weights [out, P] float64) for one dimension."""
    width = 4.0
    if scale < 1 and antialias:
        width = width / scale

        def h(t: torch.Tensor) -> torch.Tensor:
            return scale * cubic_kernel(scale * t)
    else:
        h = cubic_kernel
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]  # 1-based, may be out of range
    w = h(u[:, None] - idx)
    w = w / w.sum(dim=1, keepdim=True)
    if padding == "replicate":
        idx0 = (idx.long() - 1).clamp(0, in_len - 1)
    else:  # symmetric, MATLAB aux = [1:n, n:-1:1]; idx -> aux(mod(idx - 1, 2n) + 1)
        m = torch.remainder(idx.long() - 1, 2 * in_len)
        idx0 = torch.where(m < in_len, m, 2 * in_len - 1 - m)
    # Drop tap columns whose weight is zero for every output pixel (MATLAB does the same).
    keep = (w != 0).any(dim=0)
    return idx0[:, keep].contiguous(), w[:, keep].contiguous()


@lru_cache(maxsize=512)
def _contributions(
    in_len: int, out_len: int, scale: float, antialias: bool, padding: str
) -> tuple[torch.Tensor, torch.Tensor]:
    # Compact (out x P) form is cached; it is small even for 2K images.
    return _contributions_cpu(in_len, out_len, scale, antialias, padding)


def _weight_matrix(
    in_len: int,
    out_len: int,
    scale: float,
    antialias: bool,
    padding: str,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Dense (out, in) resampling matrix; taps that hit the same pixel (at the borders) are summed."""
    idx, w = _contributions(in_len, out_len, scale, antialias, padding)
    mat = torch.zeros(out_len, in_len, dtype=torch.float64).scatter_add_(1, idx, w)
    return mat.to(device=device, dtype=dtype)


def _band(mat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The nonzero band of a resampling matrix as (columns [out, P], weights [out, P]), in increasing column order;
    positions past a row's band get weight 0 (their column index is clamped into range)."""
    nonzero = mat != 0
    cols = torch.arange(mat.shape[1], device=mat.device)
    first = torch.where(nonzero, cols, mat.shape[1]).amin(dim=1)
    last = torch.where(nonzero, cols, -1).amax(dim=1)
    width = int((last - first).max().item()) + 1
    idx = first[:, None] + torch.arange(width, device=mat.device)[None, :]
    inside = idx <= last[:, None]
    idx = idx.clamp(max=mat.shape[1] - 1)
    return idx, torch.where(inside, mat.gather(1, idx), torch.zeros((), dtype=mat.dtype, device=mat.device))


def _apply_in_order(x: torch.Tensor, mat: torch.Tensor, dim: int) -> torch.Tensor:
    """``mat`` applied along ``dim`` (-2 or -1) as a running sum over the band in column order, one rounded multiply
    and one rounded add per tap (separate element-wise kernels: no FMA, no BLAS blocking). The result is then the same
    on every CPU and GPU; a matmul's summation order and FMA use depend on the BLAS kernel the processor selects,
    which can move a value across a .5 rounding tie of the uint8 output."""
    idx, w = _band(mat)
    shape = [1] * x.dim()
    shape[dim] = -1
    acc = torch.zeros((), dtype=x.dtype, device=x.device)
    for k in range(idx.shape[1]):
        acc = acc + w[:, k].reshape(shape) * x.index_select(dim, idx[:, k])
    return acc


def _round_uint8(x: torch.Tensor) -> torch.Tensor:
    # MATLAB double->uint8: round half away from zero, then saturate (negatives all end at 0).
    return torch.floor(x + 0.5).clamp_(0, 255)


def imresize(
    img: torch.Tensor,
    scale: float | None = None,
    out_size: tuple[int, int] | None = None,
    antialias: bool = True,
    *,
    padding: str = "replicate",
) -> torch.Tensor:
    """MATLAB ``imresize(img, scale, 'bicubic')`` on a tensor of shape (..., H, W).

    Give exactly one of ``scale`` (output ``ceil(H * scale) x ceil(W * scale)``) or ``out_size`` = (H', W')
    (per-dimension scales H'/H and W'/W, as MATLAB does). uint8 input returns uint8 (each 1-D pass rounded
    like MATLAB's uint8 path); floating input returns the input dtype (float64 computed in float64, other
    float dtypes in float32), without intermediate rounding and without clamping. ``padding`` says how taps
    outside the image are filled: "replicate" (edge pixel, matches the official benchmark LR files) or
    "symmetric" (mirror, as in MATLAB's ``contributions`` source).
    """
    if padding not in ("replicate", "symmetric"):
        raise ValueError(f"padding must be 'replicate' or 'symmetric', got {padding!r}")
    if img.dim() < 2:
        raise ValueError(f"imresize expects a tensor of shape (..., H, W), got {tuple(img.shape)}")
    if (scale is None) == (out_size is None):
        raise ValueError("give exactly one of scale or out_size")
    in_h, in_w = int(img.shape[-2]), int(img.shape[-1])
    if scale is not None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        sizes = (math.ceil(in_h * scale), math.ceil(in_w * scale))
    else:
        sizes = (int(out_size[0]), int(out_size[1]))
        if min(sizes) <= 0:
            raise ValueError(f"out_size must be positive, got {out_size}")
        scales = (sizes[0] / in_h, sizes[1] / in_w)

    is_uint8 = img.dtype == torch.uint8
    if is_uint8 or img.dtype == torch.float64:
        work = torch.float64
    elif img.is_floating_point():
        work = torch.float32
    else:
        raise TypeError(f"imresize supports uint8 and floating tensors, got {img.dtype}")

    x = img.to(work)
    # MATLAB order: dimension with the smallest scale first; stable, so height first on ties.
    order = sorted(range(2), key=lambda d: scales[d])
    for d in order:
        in_len = (in_h, in_w)[d]
        if sizes[d] == in_len and scales[d] == 1.0:
            continue
        mat = _weight_matrix(in_len, sizes[d], scales[d], antialias, padding, work, x.device)
        if is_uint8:  # exact MATLAB uint8 output: a fixed summation order, then MATLAB rounding
            x = _round_uint8(_apply_in_order(x, mat, d - 2))
        else:  # float output, not rounded: the banded matrix through BLAS (out[i] = sum_j mat[i, j] * x[j])
            x = torch.matmul(mat, x) if d == 0 else torch.matmul(x, mat.T)
    return x.to(img.dtype)


def modcrop(img: torch.Tensor | np.ndarray, scale: int) -> torch.Tensor | np.ndarray:
    """Crop the spatial size to multiples of ``scale``: ``HR[:H - H % s, :W - W % s]``.

    Tensors are (..., H, W): the last two dims are cropped. numpy arrays are HxW or HxWxC: the first two
    dims are cropped. Returns the same type (a view, not a copy).
    """
    if isinstance(img, torch.Tensor):
        h, w = img.shape[-2], img.shape[-1]
        return img[..., : h - h % scale, : w - w % scale]
    if isinstance(img, np.ndarray):
        h, w = img.shape[0], img.shape[1]
        return img[: h - h % scale, : w - w % scale, ...]
    raise TypeError(f"modcrop expects a torch.Tensor or np.ndarray, got {type(img).__name__}")


def bicubic_upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB-bicubic upscaling of a [0, 1] float LR batch (..., H, W) on its 8-bit values, back to [0, 1] float32:
    the classic bicubic baseline of the SR papers (``imresize(im2uint8(lr), scale, 'bicubic')``)."""
    return to_float(imresize(to_uint8(lr), scale=scale))
