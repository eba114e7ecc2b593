"""MATLAB bicubic `imresize`: the tap gather against the former dense-matrix method (`_imresize_dense`), same run.

    python benchmarks/imresize_speed.py --verify --repeats 5

Speed: a 2040x1356 RGB image (a Set14 HR photograph resized to that size) downscaled x2, x3, x4, on the uint8 path
(MATLAB-exact, float64) and the float32 path, with torch's threads and with one thread (a DataLoader worker's
setting); old and new runs alternate and the median is reported. Last line: ``new/old uint8 x<s>=<r> ...``.

``--verify``: counts the uint8 values where the new output differs from the dense method (and, for the benchmark
sets, from the official LR pngs) on every official LR generation (Set5 + Set14 HR -> x2, x3, x4), every shared
training image at x2, x3, x4 and synthetic ramps whose interpolated values are exact .5 ties (both paddings, down
and up). Any difference makes the script exit with status 1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sr_lightning.data.datasets import list_images
from sr_lightning.data.io import load_image
from sr_lightning.ops.imresize import _imresize_dense, _weight_matrix, imresize, modcrop
from sr_lightning.paths import shared_dir

SCALES = (2, 3, 4)
SIZE = (1356, 2040)  # (H, W) of a DIV2K-like 2K image


def _chw(arr: np.ndarray) -> torch.Tensor:
    """HxW or HxWxC uint8 array as a (C, H, W) tensor, the official files' channel count kept."""
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1)


def _diff(a: torch.Tensor, b: torch.Tensor) -> int:
    if a.shape != b.shape:
        raise AssertionError(f"shape {tuple(a.shape)} != {tuple(b.shape)}")
    return int((a != b).sum())


def verify_benchmark(root: Path) -> tuple[int, int, int, int]:
    """(generations, values, values differing from the official LR, values differing from the dense method)."""
    n = values = vs_official = vs_dense = 0
    for set_name in ("Set5", "Set14"):
        for hr_path in sorted((root / set_name / "HR").glob("*.png")):
            hr = np.array(Image.open(hr_path))
            for s in SCALES:
                lr_path = root / set_name / "LR_bicubic" / f"X{s}" / f"{hr_path.stem}x{s}.png"
                x = _chw(modcrop(hr, s))
                new = imresize(x, scale=1 / s)
                vs_official += _diff(new, _chw(np.array(Image.open(lr_path))))
                vs_dense += _diff(new, _imresize_dense(x, scale=1 / s))
                n, values = n + 1, values + new.numel()
    return n, values, vs_official, vs_dense


def verify_train(root: Path) -> tuple[int, int, int]:
    """(generations, values, values differing from the dense method) for every training image at x2, x3, x4."""
    n = values = diff = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in list_images(folder):
            hr = load_image(path)
            for s in SCALES:
                x = _chw(modcrop(hr, s))
                new = imresize(x, scale=1 / s)
                diff += _diff(new, _imresize_dense(x, scale=1 / s))
                n, values = n + 1, values + new.numel()
    return n, values, diff


def verify_ramps() -> tuple[int, int, int, int]:
    """(cases, values, exact .5 ties met by the first pass, values differing from the dense method).

    On a linear ramp the Keys cubic gives the ramp at u = x / s + (1 - 1 / s) / 2: halfway between integers for
    x1/2 and x1/4 with odd slopes, and for x2 / x4 with slopes 2 / 4 (up to the float64 rounding of the taps)."""
    cases = values = ties = diff = 0
    for h, w in ((64, 64), (61, 67), (255, 9), (9, 255), (7, 5)):
        i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        for a, b in ((1, 0), (0, 1), (1, 1), (1, 3), (2, 2), (4, 4), (3, 1)):
            x = (a * i + b * j).clamp(max=255).to(torch.uint8)[None]
            for s in (1 / 2, 1 / 4, 1 / 3, 2.0, 4.0, 3.0):
                for padding in ("replicate", "symmetric"):
                    new = imresize(x, scale=s, padding=padding)
                    diff += _diff(new, _imresize_dense(x, scale=s, padding=padding))
                    mat = _weight_matrix(h, new.shape[-2], s, True, padding, torch.float64, x.device)
                    first = mat @ x[0].double()  # the height pass (done first), unrounded
                    ties += int((first - first.floor() == 0.5).sum())
                    cases, values = cases + 1, values + new.numel()
    return cases, values, ties, diff


def verify(root: Path) -> int:
    """Print the verification table; return the number of differing values (0 expected)."""
    start = time.perf_counter()
    n, values, vs_official, vs_dense = verify_benchmark(root / "data" / "benchmark")
    n_t, values_t, diff_t = verify_train(root / "data" / "train")
    cases, values_r, ties, diff_r = verify_ramps()
    print(f"{'uint8 outputs':<44} {'images':>7} {'values':>12} {'differ: dense':>14} {'differ: official':>17}")
    print(f"{'Set5+Set14 HR -> x2,x3,x4 (official LR)':<44} {n:>7} {values:>12,} {vs_dense:>14} {vs_official:>17}")
    print(f"{'data/train (T91+BSD200) -> x2,x3,x4':<44} {n_t:>7} {values_t:>12,} {diff_t:>14} {'-':>17}")
    label = f"ramps, .5 ties: {ties:,} (down/up, 2 paddings)"
    print(f"{label:<44} {cases:>7} {values_r:>12,} {diff_r:>14} {'-':>17}")
    print(f"verification took {time.perf_counter() - start:.0f} s")
    return vs_official + vs_dense + diff_t + diff_r


def _timed(fn: Callable[[], torch.Tensor]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def speed(root: Path, repeats: int, thread_counts: list[int]) -> dict[str, float]:
    """Print old/new median times for the 2K image; return ``{"<dtype> x<s> <threads>t": new/old}``."""
    hr = load_image(root / "data" / "benchmark" / "Set14" / "HR" / "lenna.png")
    img = imresize(_chw(hr), out_size=SIZE)  # 512x512 -> 2040x1356 uint8, real content
    inputs = {"uint8": img, "float32": img.float() / 255}
    default = torch.get_num_threads()
    print(f"\n2040x1356 RGB, median of {repeats} (old and new alternate); threads: {thread_counts}")
    print(f"{'path':<8} {'scale':>5} {'threads':>7} {'old ms':>9} {'new ms':>9} {'speed-up':>9}")
    ratios = {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for s in SCALES:
            for name, x in inputs.items():
                old_fn, new_fn = partial(_imresize_dense, x, scale=1 / s), partial(imresize, x, scale=1 / s)
                old_fn(), new_fn()  # warm-up (caches the taps)
                times = [(_timed(old_fn), _timed(new_fn)) for _ in range(repeats)]
                old = 1e3 * statistics.median(t[0] for t in times)
                new = 1e3 * statistics.median(t[1] for t in times)
                ratios[f"{name} x{s} {threads}t"] = new / old
                print(f"{name:<8} {'x' + str(s):>5} {threads:>7} {old:>9.1f} {new:>9.1f} {old / new:>8.1f}x")
    torch.set_num_threads(default)
    print(" ".join(f"new/old {k.replace(' ', '_')}={v:.3f}" for k, v in ratios.items()))
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verify", action="store_true", help="bit-exactness check on the shared images and ramps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="default: torch's setting, then 1")
    args = parser.parse_args(argv)
    root = shared_dir()
    if not (root / "data" / "benchmark").is_dir():
        parser.error(f"shared data not found at {root} (set SR_SHARED_DIR)")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) by default, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    differing = verify(root) if args.verify else 0
    speed(root, args.repeats, args.threads or sorted({torch.get_num_threads(), 1}, reverse=True))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if differing:
        print(f"FAILED: {differing} uint8 values differ", file=sys.stderr)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
