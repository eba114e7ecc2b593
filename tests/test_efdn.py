"""EFDN deploy form: sizes, shapes, the conv3x3 factory hook, and the official checkpoints on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from sr_lightning.archs.catalog import architecture_of
from sr_lightning.archs.efdn import EFDN


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _load_official(weights_dir: Path, scale: int) -> dict[str, torch.Tensor]:
    path = weights_dir / f"efdn_x{scale}_official.pth"
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize(("scale", "expected"), [(2, 260_604), (3, 267_099), (4, 276_192)])
def test_parameter_count(scale: int, expected: int) -> None:
    assert _n_params(EFDN(scale=scale)) == expected


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape_odd_sizes(scale: int) -> None:
    model = EFDN(scale=scale).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 17, 23))
    assert out.shape == (2, 3, 17 * scale, 23 * scale)
    assert torch.isfinite(out).all()


def test_rejects_too_few_blocks() -> None:
    with pytest.raises(ValueError, match="num_blocks"):
        EFDN(num_blocks=2)


def test_conv3x3_factory_used_for_exactly_the_edbb_slots() -> None:
    class Marked(nn.Conv2d):
        pass

    calls: list[tuple[int, int]] = []

    def factory(cin: int, cout: int) -> nn.Module:
        calls.append((cin, cout))
        return Marked(cin, cout, 3, padding=1)

    model = EFDN(conv3x3=factory)
    marked = sorted(name for name, m in model.named_modules() if isinstance(m, Marked))
    expected = sorted(f"blocks.{i}.conv{j}" for i in range(4) for j in (2, 3))
    assert marked == expected
    assert calls == [(48, 48)] * 8
    # A factory producing plain-conv-shaped modules leaves the deploy key layout unchanged.
    assert list(model.state_dict()) == list(EFDN().state_dict())

    # Any module works, e.g. a two-branch block with its own keys (as the EDBB training form will be).
    class TwoBranch(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.k3 = nn.Conv2d(cin, cout, 3, padding=1)
            self.k1 = nn.Conv2d(cin, cout, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.k3(x) + self.k1(x)

    model = EFDN(scale=2, conv3x3=TwoBranch)
    assert "blocks.3.conv3.k1.weight" in model.state_dict()
    assert model(torch.rand(1, 3, 16, 16)).shape == (1, 3, 32, 32)


@pytest.mark.shared
@pytest.mark.parametrize("scale", [2, 4])
def test_official_weights_load_strictly(official_weights_dir: Path, scale: int) -> None:
    official = _load_official(official_weights_dir, scale)
    assert len(official) == 142
    converted = architecture_of(EFDN).convert_official(official)
    model = EFDN(scale=scale)
    model.load_state_dict(converted, strict=True)
    assert _n_params(model) == sum(v.numel() for v in official.values())
    # Our own keys (or anything else) are not an official layout: clear error.
    with pytest.raises(ValueError, match="official EFDN deploy"):
        architecture_of(EFDN).convert_official(model.state_dict())
    with pytest.raises(ValueError, match="training-form"):
        architecture_of(EFDN).convert_official({**official, "cells.0.conv2.conv1x1_sbx.k0": torch.zeros(1)})


def _y_psnr(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    """Y-PSNR of uint8 RGB images: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, borders shaved."""

    def luma(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float64)
        return 16.0 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255.0

    diff = (luma(sr) - luma(hr))[shave:-shave, shave:-shave]
    return float(10.0 * np.log10(255.0**2 / np.mean(diff**2)))


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    return (t[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


@pytest.mark.shared
def test_official_x4_butterfly_psnr(official_weights_dir: Path, benchmark_dir: Path) -> None:
    scale = 4
    model = EFDN(scale=scale).eval()
    model.load_state_dict(architecture_of(EFDN).convert_official(_load_official(official_weights_dir, scale)))
    set5 = benchmark_dir / "Set5"
    lr = np.array(Image.open(set5 / "LR_bicubic/X4/butterflyx4.png").convert("RGB"))
    hr = np.array(Image.open(set5 / "HR/butterfly.png").convert("RGB"))
    hr = hr[: lr.shape[0] * scale, : lr.shape[1] * scale]
    x = torch.from_numpy(lr.copy()).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        out = model(x)
        bicubic = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    psnr = _y_psnr(_to_uint8(out), hr, scale)
    psnr_bicubic = _y_psnr(_to_uint8(bicubic), hr, scale)
    print(f"Set5 butterfly x4 Y-PSNR: EFDN {psnr:.4f} dB, bicubic {psnr_bicubic:.4f} dB")
    assert out.shape[-2:] == hr.shape[:2]
    assert psnr > psnr_bicubic + 5.0
    # The official code gives 28.5632 dB on this image (Set5 x4 average 32.0797 matches the reference table).
    # Float rounding (~1e-6 of the output) only flips the 8-bit quantisation of pixels within ~1e-4 levels of a
    # rounding tie: a few pixels at most, ~1e-4 dB, far inside 0.01 dB; a wrong layer moves it by decibels.
    assert psnr == pytest.approx(28.5632, abs=0.01)
    # No clamp inside the network: the official model overshoots 1 on this image.
    assert out.max() > 1.0
