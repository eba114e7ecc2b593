"""`upscale` throughput against its bare network on Set14 x4, and the command's start-up to its first image.

    python benchmarks/upscale_speed.py --rounds 5 --startup-runs 5

Throughput, for EFDN x4 and FDIWN x4 (official weights): in each round, (a) bare forward passes of the network
`load_model` returns over the 14 Set14 x4 LR images, already decoded in memory as the float batches `upscale` feeds
(gray expanded to RGB, in the network's input memory format), under `torch.no_grad`; and (b) the real `upscale`
run over the same files into a temporary folder, in-process through `sr_lightning.upscale.run` with the packaged
config, timed by its own loop time (``wall_seconds`` of the report: decode -> network -> encode, model loading
excluded). Rounds alternate which of the two goes first, after one untimed warm-up round. Images/s are
14 / the median round time; last lines ``<net>/upscale_vs_bare=<upscale images/s / bare images/s>``.

Start-up (``--startup-runs``, default 5; 0 skips it): ``python -m sr_lightning.upscale weights=<EFDN x4>
input=<Set5 baby, 128x128> output=<tmp>`` as a subprocess, timed from its start until the output file exists
(written atomically, so it exists only once complete) and until the process exits; medians, as
``startup_to_first_image_s=<median>``.

The load average is printed before and after: numbers taken on a busy machine are not comparable.
"""

# ruff: noqa: E402  (process defaults are set before torch is imported, as the entry modules do)
from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sr_lightning.process import set_process_defaults

set_process_defaults()  # as the upscale command does, before torch allocates (bare passes get it too)

import torch

from sr_lightning.config import compose_config
from sr_lightning.inference.images import read_picture
from sr_lightning.inference.loading import load_model
from sr_lightning.inference.runner import input_memory_format
from sr_lightning.ops.pixels import to_float
from sr_lightning.paths import shared_dir
from sr_lightning.upscale import run

NETWORKS = {"efdn": "efdn_x4_official.pth", "fdiwn": "fdiwn_x4_official.pt"}
TARGET = 0.9


def decoded(paths: list[Path], fmt: torch.memory_format) -> list[torch.Tensor]:
    """The 1x3xHxW float batches `upscale` hands the network for `paths` (gray as three equal channels)."""
    batches = []
    for path in paths:
        arr = read_picture(path).array()
        x = to_float(arr if arr.ndim == 3 else arr[..., None]).permute(2, 0, 1)
        batches.append(x.expand(3, -1, -1)[None].contiguous(memory_format=fmt))
    return batches


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds all processes have used, CPU seconds of this process and its finished children) so far; all:
    NaN off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        busy = float("nan")
    times = os.times()
    return busy, times.user + times.system + times.children_user + times.children_system


class Others:
    """CPU seconds that other processes used while this one was measured (a quiet machine: about 0)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.wall = 0.0

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        (busy, mine), start = cpu_seconds(), time.perf_counter()
        yield
        (busy2, mine2), end = cpu_seconds(), time.perf_counter()
        self.seconds += max((busy2 - busy) - (mine2 - mine), 0.0)
        self.wall += end - start

    @property
    def cores(self) -> float:
        """Mean number of cores other processes kept busy."""
        return self.seconds / self.wall if self.wall else float("nan")


def time_bare(net: torch.nn.Module, batches: list[torch.Tensor]) -> float:
    """Seconds for one forward pass per batch."""
    start = time.perf_counter()
    with torch.no_grad():
        for x in batches:
            net(x)
    return time.perf_counter() - start


def time_upscale(weights: Path, lr_dir: Path, tmp: Path, tag: str, overrides: list[str]) -> float:
    """The loop seconds of a real `upscale` run over `lr_dir` (its progress bar silenced)."""
    options = [f"weights={weights}", f"input={lr_dir}", f"output={tmp / tag / 'out'}", *overrides]
    cfg = compose_config("upscale", options, output_dir=tmp / tag / "run")
    with contextlib.redirect_stderr(io.StringIO()):
        summary = run(cfg)
    if summary["counts"] != {"ok": len(list(lr_dir.glob("*.png")))}:
        raise RuntimeError(f"upscale run failed: {summary['counts']}")
    return float(summary["wall_seconds"])


def throughput(name: str, rounds: int, overrides: list[str], others: Others) -> tuple[float, float, list[float]]:
    """(bare images/s, upscale images/s, per-round ratios) for network `name`; `others` watches the timed rounds."""
    weights = shared_dir() / "weights" / "official" / NETWORKS[name]
    lr_dir = shared_dir() / "data" / "benchmark" / "Set14" / "LR_bicubic" / "X4"
    paths = sorted(lr_dir.glob("*.png"))
    net = load_model(weights)
    batches = decoded(paths, input_memory_format(net))
    bare: list[float] = []
    upscale: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        time_bare(net, batches)  # warm-up round
        time_upscale(weights, lr_dir, Path(tmp), "warmup", overrides)
        for i in range(rounds):
            order = ("bare", "upscale") if i % 2 == 0 else ("upscale", "bare")
            for what in order:
                with others.watch():
                    if what == "bare":
                        bare.append(time_bare(net, batches))
                    else:
                        upscale.append(time_upscale(weights, lr_dir, Path(tmp), f"round{i}", overrides))
    n = len(paths)
    ratios = [b / u for b, u in zip(bare, upscale, strict=True)]
    return n / statistics.median(bare), n / statistics.median(upscale), ratios


def startup(runs: int) -> tuple[list[float], list[float]]:
    """(seconds to the first image, seconds to exit) of `runs` upscale commands on one 128x128 PNG."""
    weights = shared_dir() / "weights" / "official" / NETWORKS["efdn"]
    image = shared_dir() / "data" / "benchmark" / "Set5" / "LR_bicubic" / "X4" / "babyx4.png"
    first: list[float] = []
    done: list[float] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "out" / "babyx4_x4.png"
            command = [sys.executable, "-m", "sr_lightning.upscale", f"weights={weights}", f"input={image}",
                       f"output={Path(tmp) / 'out'}", f"hydra.run.dir={Path(tmp) / 'run'}"]  # fmt: skip
            start = time.perf_counter()
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            while not target.exists() and proc.poll() is None:
                time.sleep(0.002)
            seen = time.perf_counter()
            _, err = proc.communicate()
            if proc.returncode != 0 or not target.exists():
                raise RuntimeError(f"upscale failed ({proc.returncode}): {err.decode()[-2000:]}")
            first.append(seen - start)
            done.append(time.perf_counter() - start)
    return first, done


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (bare + upscale) per network (0: none)")
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--startup-runs", type=int, default=5, help="start-up commands timed (0: none)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra upscale overrides")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average {load()}; {torch.get_num_threads()} torch thread(s); {os.cpu_count()} CPU(s)", flush=True)
    results: dict[str, float] = {}
    rows = []
    for name in args.networks if args.rounds else []:
        others = Others()
        bare, upscale, ratios = throughput(name, args.rounds, args.set, others)
        rows.append((name, bare, upscale, ratios, others.cores))
        results[f"{name}/upscale_vs_bare"] = upscale / bare
        print(f"{name}: done (load average {load()})", flush=True)
    if rows:
        print(f"\n{'network':<8} {'bare img/s':>11} {'upscale img/s':>14} {'ratio':>6} {'others':>7}  per-round ratios")
        for name, bare, upscale, ratios, cores in rows:
            spread = " ".join(f"{r:.2f}" for r in ratios)
            print(f"{name:<8} {bare:>11.2f} {upscale:>14.2f} {upscale / bare:>6.2f} {cores:>7.2f}  {spread}")
        print("(others: cores that other processes kept busy during the timed rounds; about 0 on a quiet machine)")
    if args.startup_runs:
        others = Others()
        with others.watch():
            first, done = startup(args.startup_runs)
        results["startup_to_first_image_s"] = statistics.median(first)
        print(f"\nstart-up to the first 128x128 image: {' '.join(f'{t:.3f}' for t in first)} s")
        print(f"start-up to exit:                    {' '.join(f'{t:.3f}' for t in done)} s")
        print(f"(others: {others.cores:.2f} cores kept busy by other processes)")
        print(f"startup_to_first_image_s={statistics.median(first):.3f}")
        print(f"startup_to_exit_s={statistics.median(done):.3f}")
    print(f"load average {load()}")
    for key in (f"{name}/upscale_vs_bare" for name, *_ in rows):
        print(f"{key}={results[key]:.3f}" + ("" if results[key] >= TARGET else f" (target {TARGET})"))
    return results


if __name__ == "__main__":
    main()
