"""VDSR's interpolated input: MATLAB bicubic (as the VDSR paper, and VDSR's in-network layer) against torch's bicubic.

    python benchmarks/vdsr_bicubic_input.py                      # Set5 x2
    python benchmarks/vdsr_bicubic_input.py --sets Set5 Set14 --scales 2 3 4

Inputs: the official LR images (MATLAB bicubic downscaling). Upscaled with
- ``matlab_uint8``: ``imresize(lr, s, 'bicubic')`` on the 8-bit LR, rounded to 8 bits per pass (``bicubic_upscale``:
  the test loop's "Bicubic" column, and what a data pipeline writing bicubic images would feed);
- ``layer``: VDSR's in-network ``MatlabBicubicUpsample`` (float, unrounded; MATLAB's kernel and edge handling);
- ``torch``: ``F.interpolate(mode="bicubic", align_corners=False)`` (Keys a = -0.75, float).
Y-PSNR (dB) against HR as the test loop scores (8-bit rounding, border = scale), and between the inputs; mean over the
set. "max |diff|" is the largest difference in 8-bit levels after rounding.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from sr_lightning.data.io import load_image
from sr_lightning.metrics.functional import psnr_y
from sr_lightning.ops.bicubic import MatlabBicubicUpsample
from sr_lightning.ops.imresize import bicubic_upscale, modcrop
from sr_lightning.ops.pixels import quantize, to_float
from sr_lightning.paths import shared_dir

PAIRS = (("matlab_uint8", "hr"), ("layer", "hr"), ("torch", "hr"), ("layer", "matlab_uint8"), ("torch", "layer"))


def inputs(lr: torch.Tensor, scale: int) -> dict[str, torch.Tensor]:
    """The three upscaled versions of a (1, 3, h, w) [0, 1] LR batch."""
    with torch.no_grad():
        return {
            "matlab_uint8": bicubic_upscale(lr, scale),
            "layer": MatlabBicubicUpsample(scale)(lr),
            "torch": F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False),
        }


def measure(set_name: str, scale: int) -> dict[str, tuple[float, float]]:
    """{"a vs b": (mean Y-PSNR, max |8-bit difference|)} over one benchmark set."""
    root = shared_dir() / "data" / "benchmark" / set_name
    psnrs: dict[str, list[float]] = {f"{a} vs {b}": [] for a, b in PAIRS}
    worst: dict[str, float] = dict.fromkeys(psnrs, 0.0)
    for hr_path in sorted((root / "HR").glob("*.png")):
        lr_path = root / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png"
        images = inputs(to_float(load_image(lr_path)).permute(2, 0, 1)[None], scale)
        images["hr"] = to_float(modcrop(load_image(hr_path), scale)).permute(2, 0, 1)[None]
        for a, b in PAIRS:
            key = f"{a} vs {b}"
            psnrs[key].append(float(psnr_y(images[a], images[b], scale)))
            worst[key] = max(worst[key], float((quantize(images[a]) - quantize(images[b])).abs().max()))
    return {k: (float(np.mean(v)), worst[k]) for k, v in psnrs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["Set5"])
    parser.add_argument("--scales", nargs="+", type=int, default=[2])
    args = parser.parse_args()
    print("| Set | Scale | Images compared | Y-PSNR (dB) | max abs diff (8-bit levels) |")
    print("| --- | --- | --- | --- | --- |")
    for set_name in args.sets:
        for scale in args.scales:
            for key, (psnr, diff) in measure(set_name, scale).items():
                print(f"| {set_name} | x{scale} | {key} | {psnr:.4f} | {diff:.0f} |")


if __name__ == "__main__":
    main()
