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

Weights are computed in float64; the uint8 path (and float64 input) is evaluated in float64. Each 1-D pass gathers
only the kernel's taps (4 / s + 2 per output pixel when downscaling), never a dense (out x in) matrix.
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
    # MATLAB's taps, before merging: small even for 2K images, so cached.
    return _contributions_cpu(in_len, out_len, scale, antialias, padding)


@lru_cache(maxsize=512)
def _taps(in_len: int, out_len: int, scale: float, antialias: bool, padding: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Compact (indices [out, P] int64, weights [out, P] float64): per output pixel the input columns it reads, in
    increasing order, first to last of nonzero weight. Taps that hit the same column (at the borders) are merged by
    adding them in tap order, the sums ``_weight_matrix``'s ``scatter_add_`` makes; positions past a row's band get
    weight 0 and an in-range index. These are the nonzero bands of the dense matrix, built without it."""
    idx, w = _contributions(in_len, out_len, scale, antialias, padding)
    lo = idx.amin(dim=1)
    span = int((idx.amax(dim=1) - lo).max().item()) + 1
    offset = idx - lo[:, None]  # column within the row's window [lo, lo + span)
    cols = torch.arange(span)
    zero = torch.zeros((), dtype=torch.float64)
    merged = torch.zeros(out_len, span, dtype=torch.float64)
    for k in range(idx.shape[1]):  # one tap at a time: the addition order of scatter_add_
        merged = merged + torch.where(offset[:, k : k + 1] == cols, w[:, k : k + 1], zero)
    nonzero = merged != 0
    first = torch.where(nonzero, cols, span).amin(dim=1)
    last = torch.where(nonzero, cols, -1).amax(dim=1)
    pos = first[:, None] + torch.arange(int((last - first).max().item()) + 1)
    weights = torch.where(pos <= last[:, None], merged.gather(1, pos.clamp(max=span - 1)), zero)
    return (lo[:, None] + pos).clamp(max=in_len - 1).contiguous(), weights.contiguous()


def _weight_matrix(
    in_len: int,
    out_len: int,
    scale: float,
    antialias: bool,
    padding: str,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Dense (out, in) resampling matrix; taps that hit the same pixel (at the borders) are summed. The reference
    the compact ``_taps`` are tested against (and the matrix the tests' rounding bounds are written with)."""
    idx, w = _contributions(in_len, out_len, scale, antialias, padding)
    mat = torch.zeros(out_len, in_len, dtype=torch.float64).scatter_add_(1, idx, w)
    return mat.to(device=device, dtype=dtype)


# CPU blocks of under 32768 values (256 KiB of float64) stay in cache and under torch's intra-op grain size, so each
# op runs on one thread instead of waking the pool for microseconds of work (with 2 busy cores that wake-up cost more
# than the work: benchmarks/imresize_speed.py); other devices take the whole image in one block.
_CPU_BLOCK = 1 << 15


def _gather_sum(x: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, dim: int) -> torch.Tensor:
    """``out[i] = sum_k w[i, k] * x[idx[i, k]]`` along ``dim`` (-2 or -1), as a running sum in k order with one rounded
    multiply and one rounded add per tap (separate element-wise ops: no FMA, no BLAS blocking). The result is the
    same on every CPU and GPU; a matmul's summation order and FMA use depend on the BLAS kernel the processor
    selects, which can move a value across a .5 rounding tie of the uint8 output."""
    if dim == -1:  # resize the width as rows of the transposed image: a gather then copies whole rows
        return _gather_sum(x.transpose(-1, -2), idx, w, -2).transpose(-1, -2)
    lead, (n_in, row) = x.shape[:-2], x.shape[-2:]
    src = x.reshape(-1, n_in, row).contiguous()
    idx_t = idx.t().to(x.device).contiguous()  # [P, out]: each tap's indices contiguous
    w_t = w.t().to(device=x.device, dtype=x.dtype).contiguous()
    out_len = idx.shape[0]
    out = torch.zeros(src.shape[0], out_len, row, dtype=x.dtype, device=x.device)
    block = max(1, (_CPU_BLOCK - 1) // max(src.shape[0] * row, 1)) if x.device.type == "cpu" else out_len
    term = torch.empty(src.shape[0], min(block, out_len), row, dtype=x.dtype, device=x.device)
    for a in range(0, out_len, block):
        b = min(a + block, out_len)
        acc = out[:, a:b]
        if b - a < term.shape[1]:  # the last, shorter block
            term = term[:, : b - a].contiguous()
        for k in range(idx_t.shape[0]):
            torch.index_select(src, 1, idx_t[k, a:b], out=term)
            term.mul_(w_t[k, a:b, None])
            acc.add_(term)
    return out.reshape(*lead, out_len, row)


def _round_uint8(x: torch.Tensor) -> torch.Tensor:
    # MATLAB double->uint8: round half away from zero, then saturate (negatives all end at 0).
    return torch.floor(x + 0.5).clamp_(0, 255)


def _passes(
    img: torch.Tensor, scale: float | None, out_size: tuple[int, int] | None, padding: str
) -> tuple[torch.dtype, list[tuple[int, int, int, float]]]:
    """Check the arguments; return the working dtype and the 1-D passes (dim, in_len, out_len, scale) in order."""
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
    if img.dtype == torch.uint8 or img.dtype == torch.float64:
        work = torch.float64
    elif img.is_floating_point():
        work = torch.float32
    else:
        raise TypeError(f"imresize supports uint8 and floating tensors, got {img.dtype}")
    # MATLAB order: dimension with the smallest scale first; stable, so height first on ties.
    order = sorted(range(2), key=lambda d: scales[d])
    lens = (in_h, in_w)
    return work, [(d, lens[d], sizes[d], scales[d]) for d in order if not (sizes[d] == lens[d] and scales[d] == 1.0)]


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
    "symmetric" (mirror, as in MATLAB's ``contributions`` source). The output is contiguous.
    """
    work, passes = _passes(img, scale, out_size, padding)
    x = img.to(work)
    for d, in_len, out_len, s in passes:
        idx, w = _taps(in_len, out_len, s, antialias, padding)
        x = _gather_sum(x, idx, w, d - 2)
        if img.dtype == torch.uint8:  # MATLAB's uint8 path rounds every 1-D pass
            x = _round_uint8(x)
    return x.to(img.dtype).contiguous()


def _imresize_dense(
    img: torch.Tensor,
    scale: float | None = None,
    out_size: tuple[int, int] | None = None,
    antialias: bool = True,
    *,
    padding: str = "replicate",
) -> torch.Tensor:
    """Reference for tests and benchmarks/imresize_speed.py: the former implementation, through the dense
    ``_weight_matrix`` (uint8: its nonzero band summed in column order; float: a BLAS matmul). Slow at 2K."""
    work, passes = _passes(img, scale, out_size, padding)
    x = img.to(work)
    for d, in_len, out_len, s in passes:
        mat = _weight_matrix(in_len, out_len, s, antialias, padding, work, x.device)
        if img.dtype == torch.uint8:
            nonzero = mat != 0
            cols = torch.arange(in_len, device=mat.device)
            first = torch.where(nonzero, cols, in_len).amin(dim=1)
            last = torch.where(nonzero, cols, -1).amax(dim=1)
            idx = first[:, None] + torch.arange(int((last - first).max().item()) + 1, device=mat.device)
            band = torch.where(idx <= last[:, None], mat.gather(1, idx.clamp(max=in_len - 1)), 0.0)
            shape = [1] * x.dim()
            shape[d - 2] = -1
            acc = torch.zeros((), dtype=x.dtype, device=x.device)
            for k in range(idx.shape[1]):
                acc = acc + band[:, k].reshape(shape) * x.index_select(d - 2, idx[:, k].clamp(max=in_len - 1))
            x = _round_uint8(acc)
        else:
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
