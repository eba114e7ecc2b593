"""Lightning overhead: training steps through `SRModule` + Lightning `Trainer` against a bare PyTorch loop.

    python benchmarks/lightning_overhead.py                 # defaults: --steps 100 --warmup 3 --rounds 5

The Lightning side is built as `python -m sr_lightning.train` builds it (composed `conf/train.yaml`, `build`),
with its defaults: EFDN x4 in the training form (online EDBB), L1, Adam + cosine schedule stepped every step, the
callbacks of `conf/callbacks/default.yaml` (best and last checkpoints, pre-emption, LR monitor, progress bar, ...;
the run prints the list) and the CSV logger. Validation is off with ``trainer.limit_val_batches=0`` (which also
skips the sanity check); extra Hydra overrides go last on the command line. Both sides train on one pre-built
batch held in memory (the Lightning side gets it from an in-memory iterable, so no loader is measured).

The bare side is a copy of the same network (same initial weights), the same loss, and an optimizer and scheduler
from the same config factories; its step is ``zero_grad; loss(net(lr), hr).backward(); opt.step(); sched.step()``.
Steps are interleaved one by one in a single fit, so load changes on the shared machine hit both sides alike: a
callback that runs first at every ``on_train_batch_start`` does one bare step (timed), and a Lightning step is the
time from the end of that bare step to the next ``on_train_batch_start`` (everything Lightning does per step,
logging, progress bar, checkpoint writes and the fetch of the next batch included). The first ``--warmup`` steps
are not timed. ``--steps`` should be a multiple of the last-checkpoint period (100) so that the timed window
holds checkpoint writes at their real rate. The process CPU time of both sides is printed too, a cross-check on a
loaded machine (it leaves out the time the OS gave to other processes, and waits on the disk).
Last line: ``lightning/bare=<ratio of total wall time per step>``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf
from torch import nn

from sr_lightning.config import compose_config
from sr_lightning.lightning.module import SRModule
from sr_lightning.lightning.trainer import build
from sr_lightning.utils.instantiate import loggable_config


class RepeatedBatch:
    """The same batch ``length`` times: an in-memory loader whose fetch costs nothing."""

    def __init__(self, batch: dict[str, torch.Tensor], length: int) -> None:
        self.batch = batch
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return itertools.repeat(self.batch, self.length)


class BareStep:
    """One plain PyTorch training step of a copy of the module's network, same loss, optimizer and scheduler."""

    def __init__(self, module: SRModule, batch: dict[str, torch.Tensor]) -> None:
        self.net: nn.Module = copy.deepcopy(module.net).train()
        self.loss = module.loss
        self.optimizer = module.optimizer_factory(params=[p for p in self.net.parameters() if p.requires_grad])
        factory = module.scheduler_factory
        self.scheduler = factory(optimizer=self.optimizer) if factory is not None else None
        self.lr, self.hr = batch["lr"], batch["hr"]

    def __call__(self) -> None:
        with torch.enable_grad():
            self.optimizer.zero_grad()  # set_to_none, as Lightning's default
            self.loss(self.net(self.lr), self.hr).backward()
            self.optimizer.step()
            if self.scheduler is not None:  # the module's scheduler runs with interval "step"
                self.scheduler.step()


class Interleave(Callback):
    """First callback of the trainer: at each batch start, one timed bare step; the Lightning step is the rest of
    the time until the next batch start. ``bare[i]`` and ``lightning[i]`` are wall seconds of step ``i``
    (0-based); ``bare_cpu`` / ``lightning_cpu`` the CPU seconds of the process (all threads) over the same spans."""

    def __init__(self, bare: BareStep) -> None:
        self.bare_step = bare
        self.bare: list[float] = []
        self.lightning: list[float] = []
        self.bare_cpu: list[float] = []
        self.lightning_cpu: list[float] = []
        self._lightning_start: tuple[float, float] | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        now = time.perf_counter(), time.process_time()
        if self._lightning_start is not None:
            self.lightning.append(now[0] - self._lightning_start[0])
            self.lightning_cpu.append(now[1] - self._lightning_start[1])
        self.bare_step()
        self._lightning_start = time.perf_counter(), time.process_time()
        self.bare.append(self._lightning_start[0] - now[0])
        self.bare_cpu.append(self._lightning_start[1] - now[1])


def summary_row(name: str, times: list[float]) -> str:
    """steps/s (from the total), mean / median / min / max ms per step."""
    mean = sum(times) / len(times)
    ms = [1e3 * t for t in times]
    return (
        f"{name:<10} {1 / mean:>8.3f} {1e3 * mean:>10.1f} {statistics.median(ms):>10.1f} "
        f"{min(ms):>10.1f} {max(ms):>10.1f}"
    )


def run(args: argparse.Namespace, out_dir: Path) -> float:
    """Compose, build, fit with interleaved bare steps; print the tables; return lightning/bare."""
    total = args.warmup + args.steps + 1  # one more step: the last timed Lightning step ends at its batch start
    overrides = [
        "model=efdn",
        "hardware=cpu",
        f"scale={args.scale}",
        f"stage.batch_size={args.batch}",
        f"stage.lr_patch_size={args.patch}",
        f"trainer.max_steps={total}",
        "trainer.limit_val_batches=0",
        "test=false",
        *args.overrides,
    ]
    cfg = compose_config("train", overrides, out_dir)
    L.seed_everything(cfg.seed, workers=True)
    _, module, trainer = build(cfg)  # the datamodule is not used: data come from memory
    module.meta = {"model": OmegaConf.to_container(cfg.model, resolve=True), "scale": int(cfg.scale)}
    for logger in trainer.loggers:  # as the entry point does before fitting
        logger.log_hyperparams(loggable_config(cfg))

    batch_size, patch, scale = int(cfg.data.batch_size), int(cfg.data.lr_patch_size), int(cfg.scale)
    batch = {
        "lr": torch.rand(batch_size, 3, patch, patch),
        "hr": torch.rand(batch_size, 3, patch * scale, patch * scale),
    }
    timer = Interleave(BareStep(module, batch))
    trainer.callbacks = [timer, *trainer.callbacks]
    callbacks = ", ".join(type(cb).__name__ for cb in trainer.callbacks[1:])
    loggers = ", ".join(type(lg).__name__ for lg in trainer.loggers) or "none"
    print(
        f"{type(module.net).__name__} x{scale} (conv3x3 mode {OmegaConf.select(cfg, 'model.conv3x3.mode')}), "
        f"batch {batch_size}, LR patch {patch}, "
        f"CPU, {torch.get_num_threads()} thread(s); {args.warmup} warm-up + {args.steps} timed steps per side, "
        f"interleaved step by step"
    )
    print(f"Lightning {L.__version__}, torch {torch.__version__}; callbacks: {callbacks}; loggers: {loggers}")
    print(
        f"limit_val_batches={cfg.trainer.limit_val_batches} (validation off), "
        f"log_every_n_steps={cfg.trainer.log_every_n_steps}, "
        f"last.ckpt every {OmegaConf.select(cfg, 'callbacks.last_checkpoint.every_n_train_steps')} steps, "
        f"progress bar refresh {OmegaConf.select(cfg, 'callbacks.progress_bar.refresh_rate')}"
    )

    trainer.fit(module, train_dataloaders=RepeatedBatch(batch, total))
    if trainer.global_step != total or len(timer.lightning) != total - 1:
        raise RuntimeError(f"expected {total} steps, got {trainer.global_step} ({len(timer.lightning)} timed)")
    window = slice(args.warmup, args.warmup + args.steps)
    bare_cpu, lightning_cpu = sum(timer.bare_cpu[window]), sum(timer.lightning_cpu[window])
    print(
        f"\nprocess CPU time per step (ms; not counting time the OS gave to other processes): "
        f"bare {1e3 * bare_cpu / args.steps:.1f}, lightning {1e3 * lightning_cpu / args.steps:.1f}, "
        f"ratio {lightning_cpu / bare_cpu:.3f}"
    )
    return print_tables(timer.bare[window], timer.lightning[window], args.rounds, args.warmup)


def print_tables(bare: list[float], lightning: list[float], rounds: int, warmup: int) -> float:
    """Per-round and per-side tables of the timed steps; returns lightning/bare (ratio of total times)."""
    steps, per_round = len(bare), len(bare) // rounds
    print(f"\n{'round':<6} {'steps':>6} {'bare ms':>10} {'lightning ms':>13} {'ratio':>7}")
    ratios = []
    for r in range(rounds):
        part = slice(r * per_round, steps if r == rounds - 1 else (r + 1) * per_round)
        b, lt = bare[part], lightning[part]
        ratios.append(sum(lt) / sum(b))
        mean_b, mean_lt = 1e3 * sum(b) / len(b), 1e3 * sum(lt) / len(lt)
        print(f"{r + 1:<6} {len(b):>6} {mean_b:>10.1f} {mean_lt:>13.1f} {ratios[-1]:>7.3f}")
    print(f"rounds: median ratio {statistics.median(ratios):.3f}, min {min(ratios):.3f}, max {max(ratios):.3f}")

    print(f"\n{'side':<10} {'steps/s':>8} {'ms/step':>10} {'median':>10} {'min':>10} {'max':>10}")
    print(summary_row("bare", bare))
    print(summary_row("lightning", lightning))
    excess = [1e3 * (lt - b) for lt, b in zip(lightning, bare)]
    top = sorted(range(steps), key=lambda i: excess[i], reverse=True)[:3]
    largest = ", ".join(f"{warmup + i + 1} ({excess[i]:+.1f})" for i in top)
    print(
        f"lightning - bare per step (ms): mean {statistics.fmean(excess):+.1f}, "
        f"median {statistics.median(excess):+.1f}; largest at global step {largest}"
    )
    ratio = sum(lightning) / sum(bare)
    print(f"lightning/bare={ratio:.3f}")
    return ratio


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48, help="LR patch size")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per side (a multiple of 100)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per side first")
    parser.add_argument("--rounds", type=int, default=5, help="the timed steps split into this many rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--output-dir", type=Path, default=None, help="run folder (default: a temporary one)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides of conf/train.yaml")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= args.steps:
        parser.error("--rounds must be between 1 and --steps")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.output_dir is not None:
        return run(args, args.output_dir)
    with tempfile.TemporaryDirectory(prefix="lightning_overhead_") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    main()
