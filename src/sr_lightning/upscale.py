"""`python -m sr_lightning.upscale weights=<file> input=<path> output=<folder>`: upscale users' images.

Examples:
    python -m sr_lightning.upscale weights=../shared/weights/official/efdn_x4_official.pth input=photos output=out
    python -m sr_lightning.upscale weights=model.onnx input="'scans/*.png'" output=out tile=auto ensemble=true
A user's file is never destroyed: every output path is planned before the network runs
(`sr_lightning.inference.plan`), and the run stops before writing anything when two inputs would write one file
(the error lists them; ``name="{stem}_{ext}_x{scale}"`` separates inputs that differ by extension), when an output
would replace an input (its own input only with ``overwrite=true``), or when an output folder is not writable.
Outputs are written atomically through hidden temporary files, which are never taken as inputs; a run removes
those that killed runs left in its output folders.
An input that is missing, unreadable, animated or too large for memory is reported by name and skipped, the others
go on; what an output cannot keep (16-bit colour, an ICC profile) is a warning. Decoding and encoding run in threads
(beside a GPU network; on the CPU, outputs are encoded in batches while the network waits:
`sr_lightning.inference.pipeline`); PNG outputs use zlib's fast Z_RLE strategy (`images.PNG_OPTIONS`); a progress
bar shows images/s. `upscale.json` in the run directory lists every input's outcome. Exits 1 if any input failed or
the run was refused.
"""

from __future__ import annotations

from sr_lightning.process import set_process_defaults

set_process_defaults()  # before torch allocates: see sr_lightning/process.py

import json
import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sr_lightning.config import entry_point, model_override
from sr_lightning.inference.inputs import collect_inputs
from sr_lightning.inference.loading import load_model
from sr_lightning.inference.pipeline import Settings, run_pipeline
from sr_lightning.inference.plan import Job, PlanError, plan_outputs, probe_jobs
from sr_lightning.inference.runner import Runner
from sr_lightning.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)


def make_runner(cfg: DictConfig) -> Any:
    """The network of `cfg.weights` ready to run with the config's device / precision / memory format options."""
    model = model_override(cfg)
    loaded = load_model(cfg.weights, model=model, scale=cfg.get("scale"), backend=cfg.get("backend"))
    if not hasattr(loaded, "parameters"):  # an ONNX backend, or a TorchScript export already wrapped as a Runner
        return loaded
    return Runner(
        loaded,
        device=cfg.device,
        precision=cfg.precision,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
    )


def run(cfg: DictConfig) -> dict[str, Any]:
    """Upscale every input of `cfg`; returns the summary written to `upscale.json`. Raises `PlanError` (nothing
    written) when the run cannot start as configured."""
    jobs = probe_jobs(collect_inputs(cfg.input, bool(cfg.recursive)), cfg.input)
    if not any(job.pending for job in jobs):  # every input failed its probe: no network needed
        return _summary(jobs, None, 0.0)
    runner = make_runner(cfg)
    plan_outputs(
        jobs, Path(cfg.output), str(cfg.name), cfg.format, runner.scale,
        overwrite=bool(cfg.overwrite), keep_existing=bool(cfg.skip_existing),
    )  # fmt: skip
    log.info("%s; %d input(s) -> %s", runner.label, len(jobs), cfg.output)
    settings = Settings(
        tile=cfg.tile, tile_overlap=int(cfg.tile_overlap), tile_budget_mb=float(cfg.tile_budget_mb),
        ensemble=bool(cfg.ensemble), jpeg_quality=int(cfg.jpeg_quality), io_threads=int(cfg.io_threads),
        max_memory_mb=cfg.max_memory_mb,
    )  # fmt: skip
    seconds = run_pipeline(jobs, runner, settings)
    return _summary(jobs, runner.label, seconds)


def _summary(jobs: list[Job], label: str | None, seconds: float) -> dict[str, Any]:
    records = [job.record for job in jobs]
    counts: dict[str, int] = {}
    for r in records:
        key = r["status"].split(" ")[0]
        counts[key] = counts.get(key, 0) + 1
    done = counts.get("ok", 0)
    # wall time of the decode -> network -> encode loop (model loading and start-up excluded)
    rate = round(done / seconds, 3) if seconds > 0 else None
    return {"model": label, "counts": counts, "wall_seconds": round(seconds, 3), "images_per_second": rate,
            "images": records}  # fmt: skip


@entry_point("upscale")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: exits 1 when any input failed or the run was refused (`PlanError`: its message, no
    traceback)."""
    try:
        summary = run(cfg)
    except PlanError as err:  # a refused run: the message, not a traceback
        log.error("%s", err)
        sys.exit(1)
    report = Path(cfg.paths.output_dir) / "upscale.json"
    atomic_write_text(report, json.dumps(summary, indent=2))
    failed = [r for r in summary["images"] if r["status"] == "failed"]
    log.info("%s; report: %s", ", ".join(f"{n} {k}" for k, n in summary["counts"].items()), report)
    for r in failed:
        log.error("failed: %s (%s)", r["input"], r["error"])
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
