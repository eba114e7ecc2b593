"""CPU inference time of FDIWN x4 on a 320x180 input, with weight normalisation (training form: the weight is
recomputed from g and v at every forward) and after folding it away (deploy form), in one run.

    python benchmarks/fdiwn_weight_norm.py --runs 10 --warmup 2 --threads 2

Runs are interleaved so load changes hit both forms alike; the median is reported. Last line:
``folded/weight_norm=<r>``. The outputs of the two forms are compared too.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from sr_lightning.archs.fdiwn import FDIWN
from sr_lightning.archs.forms import fold_weight_norm
from sr_lightning.weights import count_parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    nets = {"weight_norm": FDIWN(scale=args.scale).eval()}
    nets["folded"] = copy.deepcopy(nets["weight_norm"])
    n_folded = fold_weight_norm(nets["folded"])
    lr = torch.rand(1, 3, args.height, args.width)

    times: dict[str, list[float]] = {k: [] for k in nets}
    with torch.inference_mode():
        outs = {k: net(lr) for k, net in nets.items()}
        for i in range(args.warmup + args.runs):
            for name in list(nets)[i % 2 :] + list(nets)[: i % 2]:  # alternate which form goes first
                start = time.perf_counter()
                nets[name](lr)
                if i >= args.warmup:
                    times[name].append(time.perf_counter() - start)
    diff = (outs["weight_norm"] - outs["folded"]).abs().max().item()

    print(f"FDIWN x{args.scale}, input {args.width}x{args.height}, {args.threads} threads, {args.runs} runs (median)")
    print(f"folded {n_folded} weight-normalised convs; max |output difference| = {diff:.2e}")
    print("| form | ms / image | parameters |")
    print("| --- | --- | --- |")
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    for name, net in nets.items():
        print(f"| {name} | {med[name]:.1f} | {count_parameters(net):,} |")
    print(f"folded/weight_norm={med['folded'] / med['weight_norm']:.3f}")


if __name__ == "__main__":
    main()
