"""Time one EFDN training step (forward + L1 backward + Adam step) on CPU for the three forms of the EDBB blocks:
branch by branch, online (merged kernel, one conv), and deployed (plain 3x3 conv).

    python benchmarks/efdn_train_step.py --batch 16 --patch 64 --scale 4 --steps 10 --warmup 2 --threads 2

The three nets share their weights at the start; steps are interleaved (rotating order) so load changes on the
machine hit every mode alike; the median step time is reported. Last line: ``online/branch=<r> online/deploy=<r>``.

``--busy``: CPU seconds per training step of the online form (the quickstart's training form) on a quiet machine and
beside one busy-loop process per CPU of the affinity mask (``while True: pass`` at normal priority), in the same
process: a quiet block, then a busy one, ``--rounds`` times (default 2; the means are reported). It runs twice, each
time in a fresh subprocess: with the OpenMP wait settings as they were before `sr_lightning.process` chose them
(``--before``, default ``GOMP_SPINCOUNT=300000``: libgomp's own spin when ``OMP_WAIT_POLICY`` is unset) and with the
process defaults of the entry points. Last line: ``busy_cpu/quiet_cpu=<r>`` of the process defaults (target <= 1.5).

    python benchmarks/efdn_train_step.py --busy --batch 16 --patch 32 --steps 10

CPU time is the process's (every thread: ``time.process_time``); the busy loops are other processes, not counted.
``--busy-run`` runs one quiet + busy measurement in this process with the environment as it is.
"""

# ruff: noqa: E402  (process defaults first, as in the entry modules: OpenMP and torch read them when they load)
from __future__ import annotations

import os

ORIGINAL_ENV = dict(os.environ)  # the children of --busy start from it, before this process's defaults
# The CPUs this process may run on, read before OpenMP loads (OMP_PROC_BIND would pin the main thread, and every
# process forked from it, to one CPU); the busy loops run on all of them.
AFFINITY = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))

from sr_lightning.process import set_process_defaults

set_process_defaults()  # before torch loads: see sr_lightning/process.py

import argparse
import copy
import ctypes
import json
import multiprocessing
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sr_lightning.archs.edbb import EDBB, set_edbb_mode
from sr_lightning.archs.efdn import EFDN
from sr_lightning.archs.forms import reparameterize_model

MODES = ("branch", "online", "deploy")
#: the environment of the "before" run of --busy: libgomp's own spin count when OMP_WAIT_POLICY is unset (its manual)
BEFORE = ("GOMP_SPINCOUNT=300000",)
#: the variables shown beside each --busy run
SHOWN = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


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


def _spin(parent: int) -> None:
    """One busy loop on any CPU of the mask; on Linux it dies with the process that started it, even a killed one."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl
            return
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, AFFINITY)
    while True:
        pass


@contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """``count`` busy-loop processes at normal priority while the block runs; terminated however it ends."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None  # fork: no re-import of torch
    ctx = multiprocessing.get_context(method)
    procs = [ctx.Process(target=_spin, args=(os.getpid(),), daemon=True) for _ in range(count)]
    try:
        for proc in procs:
            proc.start()
        time.sleep(0.5)  # let the scheduler spread them
        yield
    finally:
        for proc in procs:
            if proc.pid is not None:
                proc.terminate()
                proc.join(timeout=10)


def per_step(step: Callable[[], float], steps: int) -> tuple[float, float]:
    """(process CPU seconds, wall seconds) per step over ``steps`` steps."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(steps):
        step()
    return (time.process_time() - cpu) / steps, (time.perf_counter() - wall) / steps


def busy_run(args: argparse.Namespace) -> dict[str, Any]:
    """Online-form training steps quiet, then beside ``args.busy_procs`` busy loops, ``args.rounds`` times (the means
    over the rounds: load from elsewhere comes and goes); prints a ``RESULT`` JSON line."""
    torch.manual_seed(0)
    net = EFDN(scale=args.scale, conv3x3=partial(EDBB, mode="online"))
    lr_img = torch.rand(args.batch, 3, args.patch, args.patch)
    hr_img = torch.rand(args.batch, 3, args.patch * args.scale, args.patch * args.scale)
    step = make_step(net, lr_img, hr_img)
    load = os.getloadavg()[0]
    for _ in range(args.warmup):
        step()
    quiet, busy = [], []
    for _ in range(args.rounds):
        quiet.append(per_step(step, args.steps))
        with busy_loops(args.busy_procs):
            step()  # one untimed step beside the loops
            busy.append(per_step(step, args.steps))
    (quiet_cpu, quiet_wall), (busy_cpu, busy_wall) = (tuple(map(statistics.mean, zip(*b))) for b in (quiet, busy))
    result = {
        "quiet_cpu": quiet_cpu,
        "busy_cpu": busy_cpu,
        "quiet_wall": quiet_wall,
        "busy_wall": busy_wall,
        "ratio": busy_cpu / quiet_cpu,
        "threads": torch.get_num_threads(),
        "load1": load,
        **{name: os.environ.get(name, "unset") for name in SHOWN},
    }
    print(
        f"{torch.get_num_threads()} thread(s), {args.busy_procs} busy loop(s), load average {load:.2f} at start: "
        f"quiet {quiet_cpu:.3f} CPU s/step ({quiet_wall:.3f} s wall), busy {busy_cpu:.3f} CPU s/step "
        f"({busy_wall:.3f} s wall)"
    )
    print("RESULT " + json.dumps(result))
    print(f"busy_cpu/quiet_cpu={result['ratio']:.3f}")
    return result


def compare(args: argparse.Namespace, forwarded: list[str]) -> dict[str, float]:
    """`busy_run` in a subprocess with the ``--before`` environment, then in one with the process defaults."""
    before = dict(item.split("=", 1) for item in args.before)
    runs = {"before": {**ORIGINAL_ENV, **before}, "defaults": dict(ORIGINAL_ENV)}
    print(
        f"EFDN x{args.scale} training form (online EDBB), batch {args.batch}, LR patch {args.patch}, "
        f"{args.warmup} warm-up steps, then {args.rounds} x ({args.steps} timed steps quiet, 1 + {args.steps} beside "
        f"{args.busy_procs} busy loop(s)); before: {' '.join(args.before) or 'the environment as it is'}"
    )
    results = {}
    for label, env in runs.items():
        cmd = [sys.executable, __file__, "--busy-run", *forwarded]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if not line.startswith("RESULT "):
                print(f"[{label}] {line}")
        results[label] = json.loads(next(line[7:] for line in out.splitlines() if line.startswith("RESULT ")))
    head = ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "threads", "load at start", "quiet CPU s", "busy CPU s", "ratio"]
    print(f"{'run':<9}" + "".join(f"{h:>16}" for h in head) + f"{'quiet wall s':>14}{'busy wall s':>14}")
    for label, r in results.items():
        cells = [r["OMP_WAIT_POLICY"], r["GOMP_SPINCOUNT"], r["threads"], f"{r['load1']:.2f}"]
        cells += [f"{r[k]:.3f}" for k in ("quiet_cpu", "busy_cpu", "ratio")]
        print(f"{label:<9}" + "".join(f"{c:>16}" for c in cells) + f"{r['quiet_wall']:>14.3f}{r['busy_wall']:>14.3f}")
    print(
        f"defaults/before: busy CPU {results['defaults']['busy_cpu'] / results['before']['busy_cpu']:.3f}, "
        f"quiet wall {results['defaults']['quiet_wall'] / results['before']['quiet_wall']:.3f}"
    )
    print(f"busy_cpu/quiet_cpu={results['defaults']['ratio']:.3f}")
    return {label: r["ratio"] for label, r in results.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=64, help="LR patch size")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per mode first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the process default)")
    parser.add_argument("--busy", action="store_true", help="CPU per step quiet and busy, before and with defaults")
    parser.add_argument("--busy-run", action="store_true", help="one quiet + busy measurement in this process")
    parser.add_argument("--busy-procs", type=int, default=len(AFFINITY), help="default: one per CPU")
    parser.add_argument("--rounds", type=int, default=2, help="--busy: quiet and busy blocks alternate this often")
    parser.add_argument("--before", nargs="*", default=list(BEFORE), help="KEY=VALUE of the --busy 'before' run")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.busy_run:
        return busy_run(args)
    if args.busy:
        names = ("batch", "patch", "scale", "steps", "warmup", "threads", "busy_procs", "rounds")
        given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
        return compare(args, [f"--{n.replace('_', '-')}={v}" for n, v in given.items()])
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
