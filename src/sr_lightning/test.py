"""`python -m sr_lightning.test`: evaluate weights on benchmark sets; prints a Y-PSNR/SSIM table.

Examples:
    python -m sr_lightning.test model=efdn scale=4 weights=../shared/weights/official/efdn_x4_official.pth
    python -m sr_lightning.test weights=logs/train/runs/<run>/weights/model.pth test_sets=[Set5] chop=true
Writes `benchmark.json` and `complexity.json` (the network's counts, `sr_lightning.profiling`) into the Hydra run
directory (`hydra.run.dir=<dir>` to choose it). Exits non-zero, writing nothing, when there is nothing to evaluate:
`paths.benchmark_dir` missing, a requested set missing or empty, or no image scored. Every test image is
decode-checked before the first one is scored (bad files are listed).
"""

from __future__ import annotations

from sr_lightning.process import set_process_defaults

set_process_defaults()  # before torch allocates: see sr_lightning/process.py

from omegaconf import DictConfig

from sr_lightning.config import entry_point
from sr_lightning.tasks.evaluation import evaluate_weights as evaluate


@entry_point("test")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    evaluate(cfg)


if __name__ == "__main__":
    main()
