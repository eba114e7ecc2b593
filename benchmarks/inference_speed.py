"""CPU inference speed of EFDN x4 and FDIWN x4: the default path against the deploy form in five execution modes,
and against a limit set by a single plain 3x3 conv at the network's width timed in the same run.

    python benchmarks/inference_speed.py --runs 20 --warmup 3 --threads 2 --size 180x320

Modes: ``default`` (what `load_model`, `upscale`, the test loop and `benchmark` run: `optimize_for_inference`, i.e.
the exact folds and channels_last), and on the deploy form without the folds: ``eager`` (fp32 NCHW: the default path
before the folds, at parity with the official code), ``channels_last`` (model and input), ``compile`` (torch.compile,
default mode), ``torchscript`` (`export_torchscript` + torch.jit.load), ``onnxruntime`` (`export_onnx` + an
InferenceSession with ``intra_op_num_threads=threads``). Runs are interleaved (rotating order, the limit conv included)
so load changes hit every mode alike. The process settings of the entry points (`sr_lightning.process`: huge pages,
OpenMP wait policy) are applied first, as ``upscale`` does; set the variables to override them.

Last lines: ``<net>/limit`` for the default path and ``<net>/limit_best_opt_in`` for the fastest other mode, and
``<net>/unfolded_eager`` (default / eager, same weights).

Limit: the best MACs/s of ``nn.Conv2d(C, C, 3, padding=1)`` on a 1xCxHxW input (NCHW / channels_last, eager /
compiled); limit time = network MACs (`count_macs`, for the HR output of the input size) / that rate. Last lines:
``<net>/limit=<default time / limit time>``; a network over its stretch target (EFDN 1.2, FDIWN 1.6) is named after
them.
``--profile`` runs torch.profiler on the eager and the default path of each network and prints the top ops
by self CPU time.
"""

from __future__ import annotations

from sr_lightning.process import set_process_defaults

set_process_defaults()  # before torch is imported, as the entry points do

import argparse
import copy
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from sr_lightning.exporters.onnx import export_onnx
from sr_lightning.exporters.torchscript import export_torchscript
from sr_lightning.inference.loading import load_model
from sr_lightning.paths import shared_dir
from sr_lightning.profiling import count_macs

NETWORKS = {"efdn": "efdn_x4_official.pth", "fdiwn": "fdiwn_x4_official.pt"}
TARGETS = {"efdn": 1.2, "fdiwn": 1.6}
MODES = ("default", "eager", "channels_last", "compile", "torchscript", "onnxruntime")
Runner = Callable[[], object]


def make_runner(mode: str, net: nn.Module, x: torch.Tensor, tmp: Path, name: str, weights: Path) -> Runner:
    """A no-argument closure running one forward pass of `net` (the deploy form) on `x` in `mode`; ``default`` loads
    `weights` the default way."""
    if mode == "default":
        fast = load_model(weights)
        return lambda: fast(x)
    if mode == "eager":
        return lambda: net(x)
    if mode == "channels_last":
        net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)  # a copy: the other modes keep NCHW
        x_cl = x.contiguous(memory_format=torch.channels_last)
        return lambda: net_cl(x_cl)
    if mode == "compile":
        compiled = torch.compile(net)
        compiled(x)  # compile now, so a failure shows here and not in the timed loop
        return lambda: compiled(x)
    if mode == "torchscript":
        scripted = torch.jit.load(str(export_torchscript(net, tmp / f"{name}.pt"))).eval()
        return lambda: scripted(x)
    if mode == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        path = export_onnx(net, tmp / f"{name}.onnx")
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x.numpy()}
        return lambda: session.run(None, feed)
    raise ValueError(f"unknown mode {mode!r}")


def time_interleaved(runners: dict[str, Runner], runs: int, warmup: int) -> dict[str, list[float]]:
    """Wall times (s) of `runs` calls of each runner after `warmup` untimed ones, in rotating order."""
    names = list(runners)
    for _ in range(warmup):
        for name in names:
            runners[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            start = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - start)
    return times


def conv_runners(width: int, size: tuple[int, int], block_s: float = 0.05) -> tuple[dict[str, Runner], int]:
    """One plain 3x3 conv at `width` channels on a 1 x width x H x W input: NCHW / channels_last, eager / compiled.

    Each runner calls its conv `reps` times (returned; about `block_s` seconds in all), so a few-ms conv is timed
    over a block: the tail of the previous runner (thread pools still spinning, cold caches) is amortized."""
    torch.manual_seed(0)
    conv = nn.Conv2d(width, width, 3, padding=1).eval().requires_grad_(False)
    conv_cl = copy.deepcopy(conv).to(memory_format=torch.channels_last)
    x = torch.rand(1, width, *size)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    calls: dict[str, Runner] = {"eager": lambda: conv(x), "channels_last": lambda: conv_cl(x_cl)}
    for name, (mod, inp) in {"compile": (conv, x), "compile_cl": (conv_cl, x_cl)}.items():
        try:
            compiled = torch.compile(mod)
            compiled(inp)
            calls[name] = lambda c=compiled, i=inp: c(i)
        except Exception as err:  # a benchmark reports and goes on
            print(f"conv C={width} {name}: n/a ({type(err).__name__}: {str(err).splitlines()[0][:100]})")
    single = min(time_interleaved({"eager": calls["eager"]}, 3, 1)["eager"])
    reps = max(1, math.ceil(block_s / single))

    def block(call: Runner) -> Runner:
        return lambda: [call() for _ in range(reps)]

    return {f"conv/{name}": block(call) for name, call in calls.items()}, reps


def profile(net: nn.Module, x: torch.Tensor, runs: int) -> None:
    """torch.profiler over `runs` forward passes; the top ops by self CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    net(x)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            net(x)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per mode")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per mode first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--size", default="180x320", help="LR input HxW (default 180x320: 720p output at x4)")
    parser.add_argument("--profile", action="store_true", help="torch.profiler: eager and default paths")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    assert len(size) == 2, "--size is HxW"
    weights_dir = shared_dir() / "weights" / "official"
    print(f"LR 1x3x{size[0]}x{size[1]}, {torch.get_num_threads()} thread(s), {args.runs} timed + {args.warmup} warm-up")

    rows: list[tuple[str, str, float | None, float | None, float | None]] = []
    limits: dict[str, tuple[float, float, int, float, str]] = {}
    best: dict[str, tuple[str, float]] = {}
    nets: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    for name in args.networks:
        net = load_model(weights_dir / NETWORKS[name], optimize=False)
        scale = int(net.scale)
        macs = count_macs(net, scale, hr_size=(size[0] * scale, size[1] * scale))
        width = int(net.head.out_channels)
        torch.manual_seed(0)
        x = torch.rand(1, 3, *size)
        nets[name] = (net, x)
        with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
            runners, reps = conv_runners(width, size)  # timed together with the network, under the same load
            for mode in args.modes:
                start = time.perf_counter()
                try:
                    runners[mode] = make_runner(mode, net, x, Path(tmp), name, weights_dir / NETWORKS[name])
                    print(f"{name} {mode}: set up in {time.perf_counter() - start:.1f} s", flush=True)
                except Exception as err:  # a benchmark reports and goes on
                    print(f"{name} {mode}: n/a ({type(err).__name__}: {str(err).splitlines()[0][:160]})")
            times = time_interleaved(runners, args.runs, args.warmup)
        conv_times = {k.removeprefix("conv/"): statistics.median(v) for k, v in times.items() if k.startswith("conv/")}
        conv_mode = min(conv_times, key=conv_times.__getitem__)
        rate = reps * width * width * 9 * size[0] * size[1] / conv_times[conv_mode]
        limit = macs / rate
        limits[name] = (limit, rate, width, macs, conv_mode)
        for mode in args.modes:
            if mode not in times:
                rows.append((name, mode, None, None, None))
                continue
            med, mean = 1e3 * statistics.median(times[mode]), 1e3 * statistics.mean(times[mode])
            rows.append((name, mode, med, mean, med / (1e3 * limit)))
            if mode != "default" and (name not in best or med < best[name][1]):
                best[name] = (mode, med)

    print(f"\n{'network':<8} {'mode':<14} {'median ms':>10} {'mean ms':>10} {'x limit':>8}")
    for name, mode, med, mean, ratio in rows:
        if med is None:
            print(f"{name:<8} {mode:<14} {'n/a':>10} {'n/a':>10} {'n/a':>8}")
        else:
            print(f"{name:<8} {mode:<14} {med:>10.1f} {mean:>10.1f} {ratio:>8.2f}")
    print()
    for name, (limit, rate, width, macs, conv_mode) in limits.items():
        print(
            f"limit {name}: {macs / 1e9:.2f} GMACs / {rate / 1e9:.2f} GMAC/s (3x3 conv C={width}, {conv_mode})"
            f" = {1e3 * limit:.1f} ms; best mode {best[name][0]} {best[name][1]:.1f} ms"
        )
    medians = {(n, mode): med for n, mode, med, _, _ in rows if med is not None}
    ratios: dict[str, float] = {}
    for name in limits:
        limit_ms = 1e3 * limits[name][0]
        if (name, "default") in medians:
            ratios[f"{name}/limit"] = medians[name, "default"] / limit_ms
        if name in best:
            ratios[f"{name}/limit_best_opt_in"] = best[name][1] / limit_ms
        if (name, "default") in medians and (name, "eager") in medians:
            ratios[f"{name}/unfolded_eager"] = medians[name, "default"] / medians[name, "eager"]
    for key, ratio in ratios.items():
        print(f"{key}={ratio:.2f}")

    missed = [name for name in limits if ratios.get(f"{name}/limit", 0.0) > TARGETS[name]]
    if missed:
        print(f"over target: {', '.join(missed)}" + ("" if args.profile else " (--profile shows where the time goes)"))
    for name in limits if args.profile else []:
        net, x = nets[name]
        for mode, model in (("eager", net), ("default", load_model(weights_dir / NETWORKS[name]))):
            print(f"\nprofile {name} ({mode}, {args.runs} runs):")
            with torch.no_grad():
                profile(model, x, args.runs)
    return ratios


if __name__ == "__main__":
    main()
