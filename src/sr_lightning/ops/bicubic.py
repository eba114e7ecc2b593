"""MATLAB-bicubic upsampling by an integer factor, as a network layer (VDSR's interpolated input).

``imresize(lr, s, 'bicubic')`` for an integer ``s > 1`` has no antialiasing and a periodic weight pattern: output row
``k * s + p`` (0-based) sits at input coordinate ``u = k + (p + 0.5) / s - 0.5`` and takes the Keys a = -0.5 kernel's
weights at the taps ``k - 2 .. k + 2``, edge pixels replicated (``ops/imresize.py`` documents the convention and
checks it against the official LR files). Here those weights are fixed Python floats, applied height then width
with element-wise multiply-adds on shifted slices of the replicate-padded input, and the ``s * s`` phases are placed
by a pixel shuffle. That keeps the layer exportable (ONNX: Pad, Slice, Mul, Add, DepthToSpace; TorchScript traces
it) at any input size, and out of the MAC counts, which count convolutions and matrix products only (as for
``F.interpolate``: interpolation is not a learnt layer, and the papers' MACs leave it out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.ops.imresize import cubic_kernel

#: taps k - 2 .. k + 2: the kernel's support [-2, 2] around u in (k - 0.5, k + 0.5)
TAPS: tuple[int, ...] = (-2, -1, 0, 1, 2)


def phase_weights(scale: int) -> list[list[float]]:
    """MATLAB's bicubic weights of the five taps ``k - 2 .. k + 2`` for each output phase ``p`` of ``scale``
    (row ``p``), computed in float64 and normalised to sum 1 as MATLAB's ``contributions`` does."""
    # on the CPU explicitly: a network is also built under torch.device("meta") to size it (archs/model_config.py)
    offsets = (torch.arange(scale, dtype=torch.float64, device="cpu") + 0.5) / scale - 0.5
    w = cubic_kernel(offsets[:, None] - torch.tensor(TAPS, dtype=torch.float64, device="cpu")[None, :])
    return (w / w.sum(dim=1, keepdim=True)).tolist()


def _taps(x: torch.Tensor, weights: list[float], dim: int) -> torch.Tensor:
    """sum_t weights[t] * x shifted by TAPS[t] along ``dim`` (-2 or -1) of an input padded by 2 on that dimension."""
    out = None
    for t, w in enumerate(weights):
        if w == 0.0:
            continue
        end = t - 4 or None  # the padded length minus 4 (static ends keep the exported graph size-free)
        part = x[..., t:end, :] if dim == -2 else x[..., t:end]
        out = part * w if out is None else out + part * w
    assert out is not None  # each row of weights sums to 1
    return out


class MatlabBicubicUpsample(nn.Module):
    """``imresize(x, scale, 'bicubic')`` on a float batch (N, C, H, W), unrounded and unclamped; no parameters."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.scale = scale
        self.weights = phase_weights(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return x
        padded = F.pad(x, (2, 2, 2, 2), mode="replicate")  # MATLAB clamps out-of-range taps to the edge pixel
        rows = [_taps(padded, w, -2) for w in self.weights]  # height first, as imresize on equal scales
        phases = [_taps(r, w, -1) for r in rows for w in self.weights]  # phase (p, q) at channel p * s + q
        return F.pixel_shuffle(torch.stack(phases, dim=2).flatten(1, 2), self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
