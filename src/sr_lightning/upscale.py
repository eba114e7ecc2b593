"""`python -m sr_lightning.upscale weights=<file> input=<path> output=<folder>`: upscale users' images.

Examples:
    python -m sr_lightning.upscale weights=../shared/weights/official/efdn_x4_official.pth input=photos output=out
    python -m sr_lightning.upscale weights=model.onnx input="'scans/*.png'" output=out tile=auto ensemble=true
Decoding and encoding run in threads beside the network; a progress bar shows images/s. An unreadable input is
reported by name and skipped; outputs are written atomically; `upscale.json` in the run directory lists every
input's outcome. Exits 1 if any input failed.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from sr_lightning.config import CONFIG_PATH, register_resolvers
from sr_lightning.inference.images import EXTENSIONS, output_format, read_picture, write_picture
from sr_lightning.inference.inputs import collect_inputs
from sr_lightning.inference.loading import load_model
from sr_lightning.inference.runner import Runner
from sr_lightning.inference.upscaler import upscale_image

log = logging.getLogger(__name__)
register_resolvers()


def make_runner(cfg: DictConfig) -> Any:
    """The network of `cfg.weights` ready to run with the config's device / precision / memory format options."""
    model = OmegaConf.to_container(cfg.model, resolve=False) if cfg.get("model") else None
    if model is not None:
        model.pop("scale", None)  # the file's (or `scale=`'s) scale
    loaded = load_model(cfg.weights, model=model, scale=cfg.get("scale"))
    if not hasattr(loaded, "parameters"):  # an ONNX backend, or a TorchScript export already wrapped as a Runner
        return loaded
    return Runner(
        loaded,
        device=cfg.device,
        precision=cfg.precision,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
    )


def _target(cfg: DictConfig, relative: Path, fmt: str, scale: int) -> Path:
    name = str(cfg.name).format(stem=relative.stem, scale=scale)
    return Path(cfg.output) / relative.parent / f"{name}{EXTENSIONS[fmt]}"


def run(cfg: DictConfig) -> dict[str, Any]:
    """Upscale every input of `cfg`; returns the summary written to `upscale.json`."""
    inputs = collect_inputs(cfg.input, bool(cfg.recursive))
    if not inputs:
        raise FileNotFoundError(f"no images found for input={cfg.input}")
    runner = make_runner(cfg)
    log.info("%s; %d input(s) -> %s", runner.label, len(inputs), cfg.output)
    records: list[dict[str, Any]] = []
    options = {"tile": cfg.tile, "overlap": int(cfg.tile_overlap), "ensemble": bool(cfg.ensemble)}
    options["tile_budget_mb"] = float(cfg.tile_budget_mb)
    threads = max(int(cfg.io_threads), 1)
    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as decoder, ThreadPoolExecutor(threads) as encoder:
        pending: deque[tuple[Path, Path, Future]] = deque()
        writes: list[tuple[dict[str, Any], Future]] = []
        queue = iter(inputs)

        def refill() -> None:  # keep a few decodes ahead of the network
            while len(pending) < 2 * threads:
                item = next(queue, None)
                if item is None:
                    return
                pending.append((*item, decoder.submit(read_picture, item[0])))

        refill()
        bar = tqdm(total=len(inputs), unit="img", desc="upscale", dynamic_ncols=True)
        while pending:
            path, relative, future = pending.popleft()
            refill()
            record: dict[str, Any] = {"input": str(path)}
            records.append(record)
            try:
                picture = future.result()
                fmt = output_format(picture.format, cfg.format)
                target = _target(cfg, relative, fmt, runner.scale)
                record["output"] = str(target)
                if cfg.skip_existing and target.exists():
                    record["status"] = "skipped (exists)"
                    bar.update()
                    continue
                start = time.perf_counter()
                result = upscale_image(runner, picture.array(), **options)
                record["seconds"] = round(time.perf_counter() - start, 4)
                writes.append((record, encoder.submit(write_picture, target, result, fmt, int(cfg.jpeg_quality))))
            except Exception as err:  # a bad file must not stop the others
                record["status"], record["error"] = "failed", f"{type(err).__name__}: {err}"
                log.error("%s: %s", path, record["error"])
            bar.update()
        bar.close()
        for record, write in writes:
            try:
                write.result()
                record["status"] = "ok"
            except Exception as err:
                record["status"], record["error"] = "failed", f"{type(err).__name__}: {err}"
                log.error("%s: %s", record["input"], record["error"])
    return _summary(records, runner.label, time.perf_counter() - began)


def _summary(records: list[dict[str, Any]], label: str, seconds: float) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in records:
        key = r["status"].split(" ")[0]
        counts[key] = counts.get(key, 0) + 1
    done = counts.get("ok", 0)
    # wall time of the decode -> network -> encode loop (model loading and start-up excluded)
    rate = round(done / seconds, 3) if seconds > 0 else None
    return {"model": label, "counts": counts, "wall_seconds": round(seconds, 3), "images_per_second": rate,
            "images": records}  # fmt: skip


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="upscale")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: exits 1 when any input failed."""
    summary = run(cfg)
    report = Path(cfg.paths.output_dir) / "upscale.json"
    report.write_text(json.dumps(summary, indent=2))
    failed = [r for r in summary["images"] if r["status"] == "failed"]
    log.info("%s; report: %s", ", ".join(f"{n} {k}" for k, n in summary["counts"].items()), report)
    for r in failed:
        log.error("failed: %s (%s)", r["input"], r["error"])
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
