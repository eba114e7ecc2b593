"""Training samples per second delivered by the real `SRDataModule` on 2K images, and whether it keeps a training
step fed, on the CPU (no GPU).

    python benchmarks/data_throughput.py                    # loader table + the headline training comparison
    python benchmarks/data_throughput.py --train all        # the training comparison for every configuration
    python benchmarks/data_throughput.py --quick            # fewer batches and steps

Data: a stand-in DIV2K made at run time in a temporary folder (deleted at the end): Set14 HR photographs resized
with MATLAB bicubic to 2040x1356, saved as PNG in the DIV2K layout with their x4 LR PNGs. The data module is the
real one, composed from conf/train.yaml with ``data=div2k`` (DIV2K dataset, repeat, persistent workers), batch 64,
LR patch 64, x4; configurations: ``num_workers`` 0, 1, 2 x the dataset ``cache`` none, memory, disk x LR read from
the files (``lr=official``) or generated on the fly by MATLAB bicubic (``lr=generated``).

(a) the loader alone: samples/s after a warm-up (worker start, memory caches filled; the disk cache is built once
    before, as in a run after the first epoch).
(b) training steps/s through the loader against the same steps on one pre-built batch held in memory, in the same
    process, with the loader's workers on the same cores: EFDN x4 from conf/model/efdn.yaml (training form, online
    EDBB), Adam (stage optimizer), L1. Blocks alternate, pre-built first and last (no workers alive during them):
    P L P L P with ``--rounds 2``; the means of each side are compared. Line per configuration:
    ``loader/step=<steps/s with the loader / steps/s pre-built>``.
Then the loader's samples/s beside what one GPU would consume (derived from the EFDN paper's RTX 3090 time).
"""

from __future__ import annotations

from sr_lightning.process import set_process_defaults

set_process_defaults()  # before torch is imported, as the entry points do (huge pages, thread defaults)

import argparse
import copy
import gc
import math
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from PIL import Image
from torch.utils.data import default_collate

from sr_lightning.config import compose_config
from sr_lightning.data.datamodule import SRDataModule
from sr_lightning.data.datasets import bicubic_lr
from sr_lightning.data.io import load_image
from sr_lightning.ops.imresize import imresize
from sr_lightning.paths import shared_dir

SIZE = (1356, 2040)  # (H, W): a DIV2K-like 2K image
SCALE, BATCH, PATCH = 4, 64, 64
WORKERS = (0, 1, 2)
CACHES = ("none", "memory", "disk")
LR_MODES = ("files", "generated")
HEADLINE = ("files", "disk", 2)
# EFDN paper (shared/papers/efdn_paper.txt, Table 2): 0.019 s per image on an RTX 3090 under the AIM 2020 protocol
# (DIV2K validation x4, LR about 2040x1356 / 4).
GPU_SECONDS, GPU_NAME = 0.019, "RTX 3090"
TRAIN_OVER_FORWARD = 3.0  # assumption: forward + backward of a conv net ~ 3 forwards (backward ~ 2x forward)


def make_standin(root: Path, n_images: int) -> list[Path]:
    """DIV2K-layout stand-in under ``root``: n 2040x1356 HR PNGs (Set14 photographs resized) and their x4 LR PNGs."""
    sources = sorted((shared_dir() / "data" / "benchmark" / "Set14" / "HR").glob("*.png"))
    if not sources:
        raise SystemExit(f"no Set14 HR images under {shared_dir()} (set SR_SHARED_DIR)")
    hr_dir = root / "DIV2K" / "DIV2K_train_HR"
    lr_dir = root / "DIV2K" / "DIV2K_train_LR_bicubic" / f"X{SCALE}"
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir(parents=True)
    paths = []
    for i in range(n_images):
        src = torch.from_numpy(load_image(sources[i % len(sources)])).permute(2, 0, 1)
        hr = imresize(src, out_size=SIZE).permute(1, 2, 0).numpy()
        paths.append(hr_dir / f"{i + 1:04d}.png")
        Image.fromarray(hr).save(paths[-1])
        Image.fromarray(bicubic_lr(hr, SCALE)).save(lr_dir / f"{i + 1:04d}x{SCALE}.png")
    return paths


def compose_train(extra: list[str]) -> DictConfig:
    """conf/train.yaml with data=div2k and the benchmark's batch, patch and scale (as the entry point composes it)."""
    overrides = ["data=div2k", "model=efdn", f"scale={SCALE}", f"stage.batch_size={BATCH}"]
    overrides += [f"stage.lr_patch_size={PATCH}", "test_sets=[]", "data.val=null", "data.pin_memory=false", *extra]
    return compose_config("train", overrides)


def build_datamodule(
    cfg: DictConfig, root: Path, n_images: int, lr: str, cache: str, workers: int, batches: int
) -> SRDataModule:
    """The SRDataModule of ``cfg.data`` for one configuration, set up for fitting, with >= ``batches`` per epoch."""
    data = copy.deepcopy(cfg.data)
    with open_dict(data):  # `lr` is a DIV2K argument the config leaves at its default
        data.train[0].update(root=str(root), index_range=[1, n_images], cache=cache)
        data.train[0].lr = "official" if lr == "files" else "generated"
        data.num_workers = workers
        data.repeat = math.ceil((batches + 1) * BATCH / n_images)
    dm: SRDataModule = instantiate(data)
    dm.setup("fit")
    return dm


def build_disk_cache(cfg: DictConfig, root: Path, n_images: int) -> None:
    """Write the disk-cache entries of every image (decoded HR, and LR decoded or generated), as a first epoch does."""
    for lr in LR_MODES:
        ds = build_datamodule(cfg, root, n_images, lr, "disk", 0, 1).train_sets[0]
        for i in range(len(ds)):
            ds.load_pair(i)


def per_item_costs(cfg: DictConfig, root: Path, n_images: int) -> list[tuple[str, float]]:
    """Milliseconds of the per-sample operations on one thread (median of 3): where a loader's time goes."""
    memory = build_datamodule(cfg, root, n_images, "files", "memory", 0, 1)
    disk = build_datamodule(cfg, root, n_images, "generated", "disk", 0, 1).train_sets[0]
    item = memory.train_sets[0].items[0]
    hr = load_image(item.hr)
    patches = memory.train_dataset
    ops = {
        f"decode HR PNG {SIZE[1]}x{SIZE[0]}": lambda: load_image(item.hr),
        f"decode LR PNG {SIZE[1] // SCALE}x{SIZE[0] // SCALE}": lambda: load_image(item.lr),
        f"MATLAB bicubic x1/{SCALE} of the HR (uint8)": lambda: bicubic_lr(hr, SCALE),
        "disk cache hit (HR + generated LR memmaps)": lambda: disk.load_pair(0),
        "TrainPatches item: crop + to_float + augment (memory cache)": lambda: patches[(0, 0)],
        f"{BATCH} items + collate": lambda: default_collate([patches[(0, i)] for i in range(BATCH)]),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    patches[(0, 0)]  # fills the memory cache of image 0
    out = []
    for name, fn in ops.items():
        times = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        out.append((name, 1e3 * statistics.median(times)))
    torch.set_num_threads(threads)
    return out


def loader_rate(dm: SRDataModule, warmup: int, batches: int) -> float:
    """Samples/s of ``dm``'s training loader alone, timed over ``batches`` after ``warmup`` batches."""
    loader = dm.train_dataloader()
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * BATCH / (time.perf_counter() - start)
    del it, loader  # shuts the persistent workers down
    gc.collect()
    return rate


class Trainer:
    """EFDN x4 from the config (training form), Adam from the stage, L1 from the loss config; plain steps."""

    def __init__(self, cfg: DictConfig) -> None:
        torch.manual_seed(0)
        self.net = instantiate(cfg.model).train()
        self.opt = instantiate(cfg.stage.optimizer)(self.net.parameters())
        self.loss = instantiate(cfg.loss)

    def step(self, batch: dict) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.net(batch["lr"]), batch["hr"]).backward()
        self.opt.step()

    def rate(self, batches: Iterator[dict], steps: int) -> tuple[float, float]:
        """(steps/s, process CPU seconds per step) over ``steps`` steps, each taking its batch from ``batches``
        (timed together)."""
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            self.step(next(batches))
        return steps / (time.perf_counter() - start), (time.process_time() - cpu) / steps


def _repeat(batch: dict) -> Iterator[dict]:
    while True:
        yield batch


def _children_cpu() -> float:
    """CPU seconds of this process's ended (joined) child processes: the loader's workers once shut down."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train_ratio(trainer: Trainer, dm: SRDataModule, steps: int, rounds: int) -> dict[str, list[float]]:
    """Alternating blocks of ``steps`` timed steps, pre-built first and last: steps/s of the ``rounds`` loader blocks
    (``real``) and of the ``rounds + 1`` pre-built blocks (``pre``), and CPU seconds per step of each (``real_cpu``:
    the main process plus ALL the CPU time of that block's workers, start-up, warm-up batch and prefetched extra
    batches included, so an upper bound of the loader's share). Alternation spreads slow drifts of the machine
    (load, allocator, clocks) over both sides; each loader block starts a fresh iterator whose first batch is not
    timed."""
    prebuilt = default_collate([dm.train_dataset[(0, i)] for i in range(BATCH)])
    for _ in range(2):  # warm-up (allocator, kernels)
        trainer.step(prebuilt)
    out: dict[str, list[float]] = {"real": [], "pre": [], "real_cpu": [], "pre_cpu": [], "workers_cpu": []}

    def prebuilt_block() -> None:
        rate, cpu = trainer.rate(_repeat(prebuilt), steps)
        out["pre"].append(rate)
        out["pre_cpu"].append(cpu)

    prebuilt_block()
    for _ in range(rounds):
        workers_cpu = _children_cpu()
        loader = dm.train_dataloader()
        it = iter(loader)
        trainer.step(next(it))  # warm-up: worker start, first batch, caches filled
        rate, cpu = trainer.rate(it, steps)
        del it, loader  # shuts the workers down (joined) before the pre-built block
        gc.collect()
        out["real"].append(rate)
        out["workers_cpu"].append((_children_cpu() - workers_cpu) / steps)
        out["real_cpu"].append(cpu + out["workers_cpu"][-1])
        prebuilt_block()
    return out


def gpu_need() -> tuple[float, str]:
    """Samples/s one GPU would consume, and how that figure is derived."""
    lr_pixels = (SIZE[0] // SCALE) * (SIZE[1] // SCALE)
    rate = lr_pixels / GPU_SECONDS / (TRAIN_OVER_FORWARD * PATCH * PATCH)
    how = (
        f"EFDN paper Table 2: {GPU_SECONDS} s per DIV2K-valid x4 image on an {GPU_NAME} (inference, AIM 2020 "
        f"protocol; LR taken as {SIZE[1] // SCALE}x{SIZE[0] // SCALE}) = {lr_pixels / GPU_SECONDS / 1e6:.1f} M LR "
        f"pixels/s; ASSUMED a training sample costs {TRAIN_OVER_FORWARD:g} forwards of a {PATCH}x{PATCH} patch"
    )
    return rate, how


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="stand-in 2K images")
    parser.add_argument("--batches", type=int, default=1, help="timed loader batches per worker (loader alone)")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per block")
    parser.add_argument("--rounds", type=int, default=2, help="loader blocks, alternating with pre-built ones")
    parser.add_argument("--train", default="headline", help="'headline', 'all', 'none' or lr:cache:workers,...")
    parser.add_argument("--start-method", default=None, help="workers' start method (fork, forkserver, spawn)")
    parser.add_argument("--no-loader-table", action="store_true", help="skip (a), the loader alone")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. data.worker_nice=10")
    parser.add_argument("--quick", action="store_true", help="4 images, 1 timed step per block")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.steps = 4, 1
    if args.start_method:
        torch.multiprocessing.set_start_method(args.start_method, force=True)
    configs = [(lr, cache, w) for lr in LR_MODES for cache in CACHES for w in WORKERS]
    if args.train == "all":
        train = configs
    elif args.train == "headline":
        train = [HEADLINE]
    elif args.train == "none":
        train = []
    else:
        train = [(lr, cache, int(w)) for lr, cache, w in (c.split(":") for c in args.train.split(","))]

    with tempfile.TemporaryDirectory(prefix="sr_data_throughput_") as tmp:
        root = Path(tmp)
        os.environ["SR_CACHE_DIR"] = str(root / "cache")  # disk cache and scan cache: in the temporary folder
        start = time.perf_counter()
        paths = make_standin(root, args.images)
        size_mb = statistics.mean(p.stat().st_size for p in paths) / 1e6
        print(
            f"torch {torch.__version__}, {os.cpu_count()} CPU(s), {torch.get_num_threads()} torch thread(s) in the "
            f"main process, 1 per worker; THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE')} (huge pages "
            f"for torch's CPU tensors: set by `set_process_defaults()` as in the entry points); load average "
            f"{os.getloadavg()[0]:.1f} at start"
        )
        print(
            f"stand-in: {args.images} HR PNGs {SIZE[1]}x{SIZE[0]} (mean {size_mb:.1f} MB) + x{SCALE} LR PNGs, made in "
            f"{time.perf_counter() - start:.0f} s; batch {BATCH}, LR patch {PATCH}, x{SCALE}"
        )
        cfg = compose_train(args.overrides)

        build_disk_cache(cfg, root, args.images)
        print("\nper-sample operations, 1 thread (as in a worker), median of 3")
        for name, ms in per_item_costs(cfg, root, args.images):
            print(f"  {name:<62} {ms:>8.1f} ms")

        print("\n(a) loader alone")
        print(f"{'LR':<10} {'cache':<7} {'workers':>7} {'samples/s':>10} {'ms/sample/worker':>17}")
        rates: dict[tuple[str, str, int], float] = {}
        for lr, cache, w in [] if args.no_loader_table else configs:
            dm = build_datamodule(cfg, root, args.images, lr, cache, w, (1 + args.batches) * max(w, 1))
            rates[(lr, cache, w)] = loader_rate(dm, max(w, 1), args.batches * max(w, 1))
            per_worker = 1e3 * max(w, 1) / rates[(lr, cache, w)]
            print(f"{lr:<10} {cache:<7} {w:>7} {rates[(lr, cache, w)]:>10.1f} {per_worker:>17.1f}", flush=True)

        if train:
            print(f"\n(b) training steps/s, EFDN x{SCALE} (model=efdn, online EDBB), Adam, L1, batch {BATCH}")
            print(
                f"{'LR':<10} {'cache':<7} {'workers':>7} {'loader':>9} {'pre-built':>19} {'loader/step':>12} "
                f"{'CPU s/step':>15} {'cpu':>9}"
            )
            trainer = Trainer(cfg)
            lines = []
            for lr, cache, w in train:
                dm = build_datamodule(cfg, root, args.images, lr, cache, w, 2 * args.steps + 2)
                r = train_ratio(trainer, dm, args.steps, args.rounds)
                ratio = statistics.mean(r["real"]) / statistics.mean(r["pre"])
                cpu_ratio = statistics.mean(r["pre_cpu"]) / statistics.mean(r["real_cpu"])
                cols = f"{' '.join(f'{x:.4f}' for x in r['real']):>9} {' '.join(f'{x:.4f}' for x in r['pre']):>19}"
                cpu = f"{statistics.mean(r['real_cpu']):.2f} / {statistics.mean(r['pre_cpu']):.2f}"
                workers = statistics.mean(r["workers_cpu"])
                print(f"{lr:<10} {cache:<7} {w:>7} {cols} {ratio:>12.3f} {cpu:>15} {cpu_ratio:>9.3f}", flush=True)
                lines.append(
                    f"loader/step={ratio:.3f} cpu={cpu_ratio:.3f} (lr={lr} cache={cache} workers={w}; of the loader "
                    f"blocks' CPU s/step, {workers:.2f} in the workers, start-up and prefetch included)"
                )
            print(
                f"(steps/s per block, in the order pre-built, loader, pre-built, ...; {args.steps} timed steps per "
                f"block; loader/step = mean of the loader blocks / mean of the pre-built blocks. CPU s/step: loader "
                f"blocks (main process + all worker CPU) / pre-built blocks; cpu = pre-built / loader, the wall-clock "
                f"ratio without the machine's speed drifts)"
            )
            print(f"samples/s a pre-built step consumes: {BATCH * statistics.mean(r['pre']):.1f} (table (a): loader)")
            print("\n".join(lines))

        need, how = gpu_need()
        print(f"\nGPU: one {GPU_NAME} would consume ~{need:.0f} samples/s ({how})")
        if not rates:
            return
        per_worker = rates[("files", "disk", 1)]
        print(
            f"loader, LR files + disk cache: {rates[HEADLINE]:.0f} samples/s with 2 workers, {per_worker:.0f} with 1: "
            f"~{math.ceil(need / per_worker)} workers (cores) would feed that GPU if workers scale linearly"
        )
        print(f"load average {os.getloadavg()[0]:.1f} at the end; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
