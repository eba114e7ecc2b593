"""Tiled inference: the LR image is cut into overlapping tiles, each is super-resolved on its own, and the outputs
are blended with linear ramps across the overlaps (chaiNNer / Real-ESRGAN habit, with blending instead of a crop).

Tiles change the output of both networks here: EFDN's ESA downsamples (stride-2 conv, 7x7/3 max-pool) on a grid
anchored at the tile's corner and resizes its mask to the tile, and FDIWN's shuffle attention pools over the whole
input. The PSNR moves little (official x4, tile 64 / overlap 16: EFDN -0.0014 dB on Set5, -0.0050 dB on Set14;
FDIWN +0.0005 / +0.0227 dB; docs/results.md, benchmarks/upscale_quality.py).
`tile="auto"` takes the largest square tile whose estimated memory fits (`auto_tile`); an out-of-memory error halves
the tile and retries (`run_tiled`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)
Net = Callable[[torch.Tensor], torch.Tensor]
#: the smallest tile side `auto_tile` and the out-of-memory retries go down to (LR pixels)
MIN_TILE = 32
#: memory estimate for networks that cannot be probed (ONNX sessions): bytes per LR pixel
FALLBACK_BYTES_PER_PIXEL = 16_384


def padded(net: Net, min_size: int, scale: int) -> Net:
    """`net` for inputs smaller than `min_size`: they are edge-padded to it, and the output is cropped back."""

    def run(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = max(min_size - h, 0), max(min_size - w, 0)
        if not ph and not pw:
            return net(x)
        out = net(F.pad(x, (0, pw, 0, ph), mode="replicate"))
        return out[..., : h * scale, : w * scale]

    return run


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = max(tile - overlap, 1)
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def _ramp(length: int, start: int, end: int, size: int, fade: int, device: torch.device) -> torch.Tensor:
    """Blend weights along one axis of a tile output: 1 inside, rising over `fade` pixels at an edge that another
    tile overlaps (never at the image border); strictly positive."""
    w = torch.ones(length, device=device)
    fade = min(fade, length)
    ramp = (torch.arange(fade, device=device, dtype=torch.float32) + 0.5) / fade
    if start > 0 and fade:
        w[:fade] = ramp
    if end < size and fade:
        w[-fade:] = torch.minimum(w[-fade:], ramp.flip(0))
    return w


def tiled_forward(net: Net, lr: torch.Tensor, scale: int, tile: int, overlap: int = 16) -> torch.Tensor:
    """Super-resolve `lr` (N,C,h,w) tile by tile (tiles of `tile` LR pixels overlapping by `overlap`), blended."""
    n, _, h, w = lr.shape
    if h <= tile and w <= tile:
        return net(lr).float()
    out: torch.Tensor | None = None
    weight = torch.zeros(1, 1, h * scale, w * scale, device=lr.device)
    fade = overlap * scale
    for y in _starts(h, tile, overlap):
        for x in _starts(w, tile, overlap):
            y1, x1 = min(y + tile, h), min(x + tile, w)
            piece = net(lr[..., y:y1, x:x1]).float()
            if out is None:
                out = torch.zeros(n, piece.shape[1], h * scale, w * scale, device=lr.device)
            wy = _ramp(piece.shape[-2], y, y1, h, fade, lr.device)
            wx = _ramp(piece.shape[-1], x, x1, w, fade, lr.device)
            wt = wy[:, None] * wx[None, :]
            out[..., y * scale : y1 * scale, x * scale : x1 * scale] += piece * wt
            weight[..., y * scale : y1 * scale, x * scale : x1 * scale] += wt
    assert out is not None
    return out.div_(weight)


def bytes_per_pixel(net: Net, channels: int = 3, probe: int = 64) -> float:
    """Estimated forward memory per LR pixel. GPU: measured (peak allocation of a probe forward). CPU and other
    backends: the bytes of every module output of a probe forward (an upper bound on the live activations of a
    no-grad forward, which frees them as it goes); `FALLBACK_BYTES_PER_PIXEL` when `net` has no modules."""
    module = getattr(net, "module", net)
    if not isinstance(module, nn.Module):
        return float(FALLBACK_BYTES_PER_PIXEL)
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    x = torch.rand(1, channels, probe, probe, device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        with torch.no_grad():
            net(x)
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / probe**2
    total = 0

    def count(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * out.element_size()

    hooks = [m.register_forward_hook(count) for m in module.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for hook in hooks:
            hook.remove()
    return total / probe**2


def auto_tile(net: Net, budget_bytes: float, min_size: int = MIN_TILE) -> int:
    """The largest square tile side (a multiple of 16, at least `min_size`) whose estimated memory fits."""
    side = math.isqrt(int(budget_bytes / max(bytes_per_pixel(net), 1.0)))
    return max(side // 16 * 16, min_size, MIN_TILE)


def cuda_budget(fraction: float = 0.8) -> float:
    """Bytes of the current CUDA device's free memory that `tile=auto` may use."""
    free, _ = torch.cuda.mem_get_info()
    return free * fraction


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's failure."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and any(
        s in str(err) for s in ("out of memory", "can't allocate memory", "DefaultCPUAllocator")
    )


def run_tiled(net: Net, lr: torch.Tensor, scale: int, tile: int | None, overlap: int, min_tile: int) -> torch.Tensor:
    """`tiled_forward` (whole image for `tile=None`); on out-of-memory, retry with half the tile, down to
    `min_tile`."""
    size = tile if tile is not None else max(lr.shape[-2:])
    while True:
        try:
            return tiled_forward(net, lr, scale, size, overlap)
        except Exception as err:
            if not is_out_of_memory(err) or size // 2 < min_tile:
                raise
            if lr.is_cuda:
                torch.cuda.empty_cache()
            log.warning("out of memory with tile %d; retrying with tile %d", size, size // 2)
            size //= 2
