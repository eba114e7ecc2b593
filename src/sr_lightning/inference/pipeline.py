"""The `upscale` loop over planned jobs: inputs decoded in `io_threads` threads ahead of the network, outputs
encoded in as many threads behind it, a progress bar of images/s. Everything is set up once per run (the network by
`sr_lightning.upscale.make_runner`, the thread pools here); each image costs a decode, a forward pass and an encode.

Where the encoders run: beside the network when it runs on a GPU. On the CPU the network's intra-op threads take
every core (one per core by default), and an encoder beside them slows it by more than the encoder's own time: its
threads meet at each operation and wait there for the one whose core the encoder took. There the outputs are handed
to the encoders ``2 * io_threads`` at a time, and the network waits while they are encoded, one per encoder thread.
Set14 x4 on this 2-core CPU, the two schedules interleaved in one process: EFDN 30.5 images/s in batches against
22.8 with each output encoded beside the network (bare forward passes: 39.7, benchmarks/upscale_speed.py); FDIWN
3.84 against 3.63.

Memory stays bounded however many images a run has: at most ``2 * io_threads`` decodes wait ahead of the network,
and the network waits while ``2 * io_threads`` outputs wait to be encoded. Before each image, its output buffers
(`output_bytes`) are checked against the memory budget (`max_memory_mb`, else ``MemAvailable`` from
/proc/meminfo): tiling shrinks the network's activations but not its output, so an output that cannot fit fails
that image with a message, and the others go on.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sr_lightning.inference.images import Picture, read_picture, write_picture
from sr_lightning.inference.plan import Job
from sr_lightning.inference.upscaler import upscale_image

log = logging.getLogger(__name__)
_MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class Settings:
    """How the loop runs each image (the `conf/upscale.yaml` options of the same names)."""

    tile: int | str | None = None
    tile_overlap: int = 16
    tile_budget_mb: float = 2048
    ensemble: bool = False
    jpeg_quality: int = 95
    io_threads: int = 2
    max_memory_mb: float | None = None


class OutputTooLargeError(MemoryError):
    """An image whose output buffers exceed the memory budget (tiling cannot shrink an output)."""


def output_bytes(shape: tuple[int, ...], dtype: np.dtype, scale: int) -> int:
    """Bytes an image's output needs at once: the float32 output the network's tiles are blended into (RGB, plus
    alpha) and the result array (the input's channels and dtype), both `scale` times the input's sides."""
    h, w = shape[:2]
    channels = shape[2] if len(shape) == 3 else 1
    has_alpha = channels in (2, 4)
    return h * scale * w * scale * (4 * (3 + has_alpha) + channels * np.dtype(dtype).itemsize)


def memory_budget(max_memory_mb: float | None) -> tuple[int, str] | None:
    """(bytes, where the number comes from): `max_memory_mb`, else ``MemAvailable``; None where neither exists."""
    if max_memory_mb is not None:
        return int(float(max_memory_mb) * 2**20), "max_memory_mb"
    try:
        lines = _MEMINFO.read_text().splitlines()
    except OSError:  # not Linux: no budget to check against
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024, "MemAvailable"
    return None


def check_memory(image: np.ndarray, scale: int, max_memory_mb: float | None) -> None:
    """`OutputTooLargeError` when `image`'s output buffers do not fit the memory budget."""
    budget = memory_budget(max_memory_mb)
    need = output_bytes(image.shape, image.dtype, scale)
    if budget is None or need <= budget[0]:
        return
    h, w = image.shape[:2]
    todo = "raise max_memory_mb" if budget[1] == "max_memory_mb" else "free memory"
    raise OutputTooLargeError(
        f"its {w * scale}x{h * scale} output needs about {need / 2**20:.3g} MiB, more than the "
        f"{budget[0] / 2**20:.3g} MiB of {budget[1]} (tiling cannot shrink an output): {todo} or downscale the input"
    )


def _wait_for_room(writes: set[Future], limit: int) -> None:
    """Block while `limit` outputs wait to be encoded; `writes` keeps only those not finished."""
    writes.difference_update({f for f in writes if f.done()})
    while len(writes) >= limit:
        done, _ = wait(writes, return_when=FIRST_COMPLETED)
        writes.difference_update(done)


def _note(job: Job, warnings: list[str]) -> None:
    """Record and log (once per image) what the output could not keep."""
    for text in warnings:
        log.warning("%s: %s", job.source, text)
    if warnings:
        job.record.setdefault("warnings", []).extend(warnings)


def _upscale(job: Job, picture: Picture, runner: Any, settings: Settings) -> np.ndarray:
    _note(job, picture.warnings)
    image = picture.array()
    check_memory(image, runner.scale, settings.max_memory_mb)
    options = {"tile": settings.tile, "overlap": int(settings.tile_overlap), "ensemble": bool(settings.ensemble)}
    start = time.perf_counter()
    result = upscale_image(runner, image, tile_budget_mb=float(settings.tile_budget_mb), **options)
    job.record["seconds"] = round(time.perf_counter() - start, 4)
    return result


def shares_cores(runner: Any) -> bool:
    """True when the network runs on the CPU, whose cores the encoders would take from it (an ONNX session counts
    as the CPU: its inputs and outputs are host arrays)."""
    return getattr(getattr(runner, "device", None), "type", "cpu") == "cpu"


def run_pipeline(jobs: list[Job], runner: Any, settings: Settings) -> float:
    """Upscale every pending job (decode -> network -> encode, overlapped; the encoders in batches while the
    network waits where it `shares_cores`, see the module docstring); returns the loop's wall seconds."""
    todo = [job for job in jobs if job.pending]
    threads = max(int(settings.io_threads), 1)
    limit = 2 * threads
    batches = shares_cores(runner)
    began = time.perf_counter()
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="img", desc="upscale", dynamic_ncols=True)
    writes: list[tuple[Job, Future]] = []
    waiting: set[Future] = set()
    held: list[tuple[Job, tuple[Any, ...]]] = []  # outputs not yet handed to the encoders
    with ThreadPoolExecutor(threads) as decoder, ThreadPoolExecutor(threads) as encoder:
        decodes: deque[tuple[Job, Future]] = deque()
        feed = iter(todo)

        def refill() -> None:  # keep a few decodes ahead of the network
            while len(decodes) < limit and (job := next(feed, None)) is not None:
                decodes.append((job, decoder.submit(read_picture, job.source)))

        def hand_over() -> None:  # the held outputs to the encoders (the encoders' references are their last)
            for job, args in held:
                write = encoder.submit(write_picture, *args)
                waiting.add(write)
                writes.append((job, write))
            held.clear()

        refill()
        while decodes:
            job, decoded = decodes.popleft()
            refill()
            try:
                picture = decoded.result()
                _wait_for_room(waiting, limit)
                result = _upscale(job, picture, runner, settings)
                quality, icc = int(settings.jpeg_quality), picture.icc_profile
                held.append((job, (job.target, result, job.format, quality, icc)))
                del result
            except Exception as err:  # a bad file must not stop the others
                job.fail(err)
            if not batches or len(held) >= limit:
                hand_over()
                if batches:
                    _wait_for_room(waiting, 1)  # the whole batch encoded before the network goes on
            bar.update()
        hand_over()
        bar.close()
        for job, write in writes:
            try:
                _note(job, write.result())
                job.record["status"] = "ok"
            except Exception as err:
                job.fail(err)
    return time.perf_counter() - began
