"""Time one EFDN training step (forward + L1 backward + Adam step) on CPU for the three forms of the EDBB blocks:
branch by branch, online (merged kernel, one conv), and deployed (plain 3x3 conv).

    python benchmarks/efdn_train_step.py --batch 16 --patch 64 --scale 4 --steps 10 --warmup 2 --threads 2

The three nets share their weights at the start; steps are interleaved (rotating order) so load changes on the
machine hit every mode alike; the median step time is reported. Last line: ``online/branch=<r> online/deploy=<r>``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.archs.edbb import EDBB, set_edbb_mode
from sr_lightning.archs.efdn import EFDN
from sr_lightning.archs.forms import reparameterize_model

MODES = ("branch", "online", "deploy")


def build_nets(scale: int) -> dict[str, nn.Module]:
    """EFDN with all seven EDBB branches in each form, same weights."""
    online = EFDN(scale=scale, conv3x3=partial(EDBB, mode="online"))
    branch = copy.deepcopy(online)
    set_edbb_mode(branch, "branch")
    deploy = copy.deepcopy(online)
    reparameterize_model(deploy)
    return {"branch": branch, "online": online, "deploy": deploy}


def make_step(net: nn.Module, lr_img: torch.Tensor, hr_img: torch.Tensor) -> Callable[[], float]:
    """One training step as a closure returning its wall time in seconds."""
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step() -> float:
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.l1_loss(net(lr_img), hr_img).backward()
        opt.step()
        return time.perf_counter() - start

    return step


def merge_cost_ms(net: nn.Module, repeats: int = 5) -> float:
    """Median time (ms) to build every EDBB's merged kernel and back-propagate through it (the online overhead)."""
    blocks = [m for m in net.modules() if isinstance(m, EDBB)]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        total = sum(k.sum() + b.sum() for k, b in (blk.merged_kernel_bias() for blk in blocks))
        total.backward()
        times.append(time.perf_counter() - start)
    net.zero_grad(set_to_none=True)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=64, help="LR patch size")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per mode first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    nets = build_nets(args.scale)
    lr_img = torch.rand(args.batch, 3, args.patch, args.patch)
    hr_img = torch.rand(args.batch, 3, args.patch * args.scale, args.patch * args.scale)
    steps = {mode: make_step(net, lr_img, hr_img) for mode, net in nets.items()}
    params = {mode: sum(p.numel() for p in net.parameters()) for mode, net in nets.items()}
    print(
        f"EFDN x{args.scale}, 7-branch EDBB, batch {args.batch}, LR patch {args.patch}, "
        f"{torch.get_num_threads()} thread(s), {args.steps} timed + {args.warmup} warm-up steps per mode"
    )

    for _ in range(args.warmup):
        for mode in MODES:
            steps[mode]()
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for i in range(args.steps):
        order = MODES[i % 3 :] + MODES[: i % 3]  # rotate so no mode always runs first
        for mode in order:
            times[mode].append(steps[mode]())

    median = {mode: 1e3 * statistics.median(t) for mode, t in times.items()}
    print(f"{'mode':<8} {'ms/step':>10} {'min':>10} {'max':>10} {'params':>10}")
    for mode in MODES:
        lo, hi = 1e3 * min(times[mode]), 1e3 * max(times[mode])
        print(f"{mode:<8} {median[mode]:>10.1f} {lo:>10.1f} {hi:>10.1f} {params[mode]:>10,}")
    print(f"online kernel merge (8 blocks, forward + backward): {merge_cost_ms(nets['online']):.2f} ms/step")
    ratios = {
        "online/branch": median["online"] / median["branch"],
        "online/deploy": median["online"] / median["deploy"],
    }
    print(" ".join(f"{k}={v:.3f}" for k, v in ratios.items()))
    return ratios


if __name__ == "__main__":
    main()
