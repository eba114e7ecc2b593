"""Upscale quality and throughput: whole-image vs tiled vs x8 self-ensemble PSNR/SSIM on Set5 / Set14, and the
`upscale` CLI's images/s against the network's bare forward time.

    python benchmarks/upscale_quality.py                      # EFDN x4 and FDIWN x4, Set5 + Set14, tile 64
    python benchmarks/upscale_quality.py --tile 96 --overlap 24 --sets Set14 --no-cli

Scores follow the test loop (Y channel, border = scale, MATLAB rounding); LR = the official bicubic images.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sr_lightning.data.io import load_image
from sr_lightning.inference.loading import load_model
from sr_lightning.inference.upscaler import upscale_image
from sr_lightning.metrics.functional import psnr_y, ssim_y
from sr_lightning.ops.pixels import to_float
from sr_lightning.paths import shared_dir

WEIGHTS = {"efdn": "efdn_x4_official.pth", "fdiwn": "fdiwn_x4_official.pt"}


def score(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float]:
    hr = hr[: sr.shape[0], : sr.shape[1]]
    a, b = (to_float(x).permute(2, 0, 1)[None] for x in (sr, hr))
    return float(psnr_y(a, b, scale)), float(ssim_y(a, b, scale))


def pairs(set_name: str, scale: int) -> list[tuple[Path, Path]]:
    root = shared_dir() / "data" / "benchmark" / set_name
    hrs = sorted((root / "HR").glob("*.png"))
    return [(root / "LR_bicubic" / f"X{scale}" / f"{p.stem}x{scale}.png", p) for p in hrs]


def quality(net_name: str, sets: list[str], modes: dict[str, dict]) -> list[dict]:
    model = load_model(shared_dir() / "weights" / "official" / WEIGHTS[net_name])
    rows = []
    for set_name in sets:
        results: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
        for lr_path, hr_path in pairs(set_name, model.scale):
            lr, hr = load_image(lr_path), load_image(hr_path)
            for mode, options in modes.items():
                results[mode].append(score(upscale_image(model, lr, **options), hr, model.scale))
        for mode, values in results.items():
            psnr, ssim = np.mean([v[0] for v in values]), np.mean([v[1] for v in values])
            rows.append({"net": net_name, "set": set_name, "mode": mode, "psnr": psnr, "ssim": ssim})
    return rows


def throughput(net_name: str, set_name: str = "Set14") -> dict:
    """CLI images/s on a set (decode + network + encode, one process, progress bar off) against the sum of the bare
    forward times of the same images in this process."""
    weights = shared_dir() / "weights" / "official" / WEIGHTS[net_name]
    model = load_model(weights)
    lrs = [to_float(load_image(lr)).permute(2, 0, 1)[None] for lr, _ in pairs(set_name, model.scale)]
    with torch.no_grad():
        for x in lrs[:2]:
            model(x)  # warm-up
        start = time.perf_counter()
        for x in lrs:
            model(x)
        bare = time.perf_counter() - start
    lr_dir = pairs(set_name, model.scale)[0][0].parent
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "sr_lightning.upscale", f"weights={weights}", f"input={lr_dir}",
               f"output={tmp}/out", f"hydra.run.dir={tmp}/run"]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
        summary = json.loads(Path(tmp, "run", "upscale.json").read_text())
    seconds = sum(r["seconds"] for r in summary["images"])
    return {"net": net_name, "images": len(lrs), "bare_forward_s": bare, "upscale_compute_s": seconds,
            "loop_s": summary["wall_seconds"], "images_per_s": summary["images_per_second"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", default=list(WEIGHTS))
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--no-ensemble", action="store_true")
    parser.add_argument("--no-cli", action="store_true")
    parser.add_argument("--no-quality", action="store_true", help="only the throughput table")
    args = parser.parse_args()
    torch.set_num_threads(2)
    modes = {"whole": {}, f"tile {args.tile}/{args.overlap}": {"tile": args.tile, "overlap": args.overlap}}
    if not args.no_ensemble:
        modes["ensemble x8"] = {"ensemble": True}
    for net in [] if args.no_quality else args.nets:
        if net == args.nets[0]:
            print("| net | set | mode | PSNR | SSIM | PSNR - whole |")
            print("| --- | --- | --- | --- | --- | --- |")
        rows = quality(net, args.sets, modes)
        whole = {r["set"]: r["psnr"] for r in rows if r["mode"] == "whole"}
        for r in rows:
            delta = r["psnr"] - whole[r["set"]]
            print(f"| {r['net']} | {r['set']} | {r['mode']} | {r['psnr']:.4f} | {r['ssim']:.4f} | {delta:+.4f} |")
    if not args.no_cli:
        print("\n| net | Set14 images | bare forward, sum (s) | upscale_image, sum (s) | CLI loop (s) | CLI images/s |"
              " bare images/s |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for net in args.nets:
            t = throughput(net)
            bare_rate = t["images"] / t["bare_forward_s"]
            print(f"| {net} | {t['images']} | {t['bare_forward_s']:.2f} | {t['upscale_compute_s']:.2f} | "
                  f"{t['loop_s']:.2f} | {t['images_per_s']:.2f} | {bare_rate:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
