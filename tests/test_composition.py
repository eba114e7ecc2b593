"""DDP x mixed precision x re-parameterization x test loop, composed through the real entry point on real images.

A pairwise subset of {cpu, ddp_cpu} x {32-true, bf16-mixed} x {default callbacks, reparam at fit start, reparam at a
step}: every pair of values occurs in some run. Each run must complete, keep the cosine LR schedule continuous across
a fold, write model.pth and deploy.pth holding the best checkpoint's network, and test exactly that network: its
numbers equal those of `python -m sr_lightning.test` on the exported weights (fp32).
"""

from __future__ import annotations

import csv
import json
import math
import time
from functools import partial
from itertools import combinations
from pathlib import Path

import pytest
import torch
from test_entry_points import run

from sr_lightning.archs.edbb import make_edbb
from sr_lightning.archs.efdn import EFDN
from sr_lightning.archs.forms import reparameterize_model

pytestmark = pytest.mark.slow

STEPS, LR0, ETA_MIN = 6, 1e-3, 1e-6
# A small EFDN (training form, seven-branch EDBBs) so that six runs fit in CI.
MODEL = ("model.channels=16", "model.num_blocks=3", "model.esa_channels=4")
CALLBACKS = {
    "default": ("callbacks=default",),
    "reparam_start": ("callbacks=reparam",),
    "reparam_step": ("callbacks=reparam", "callbacks.reparameterize.at=4"),
}
# EMA rides along where most meets: DDP, bf16 autocast and a fold in the middle of training.
EXTRA = {("ddp_cpu", "bf16-mixed", "reparam_step"): ("callbacks.ema.enabled=true",)}
MATRIX = [
    ("cpu", "32-true", "default"),
    ("ddp_cpu", "bf16-mixed", "default"),
    ("cpu", "bf16-mixed", "reparam_start"),
    ("ddp_cpu", "32-true", "reparam_start"),
    ("cpu", "32-true", "reparam_step"),
    ("ddp_cpu", "bf16-mixed", "reparam_step"),
]


def test_matrix_is_pairwise_complete():
    values = [{"cpu", "ddp_cpu"}, {"32-true", "bf16-mixed"}, set(CALLBACKS)]
    for i, j in combinations(range(3), 2):
        assert {(row[i], row[j]) for row in MATRIX} == {(a, b) for a in values[i] for b in values[j]}


def logged_lrs(run_dir: Path) -> dict[int, float]:
    """step -> learning rate logged by LearningRateMonitor (one CSV row per logging step)."""
    (metrics,) = run_dir.glob("csv/**/metrics.csv")
    lrs = {}
    for row in csv.DictReader(metrics.open()):
        key = next((k for k in row if k.startswith("lr-")), None)
        if key and row[key]:
            lrs[int(row["step"])] = float(row[key])
    return lrs


@pytest.mark.parametrize(("hardware", "precision", "callbacks"), MATRIX)
def test_composition(hardware, precision, callbacks, benchmark_dir, tmp_path):
    run_dir = tmp_path / "run"
    started = time.monotonic()
    run(
        "sr_lightning.train",
        f"hardware={hardware}",
        f"trainer.precision={precision}",
        *CALLBACKS[callbacks],
        *EXTRA.get((hardware, precision, callbacks), ()),
        *MODEL,
        "scale=4",
        f"trainer.max_steps={STEPS}",
        "trainer.log_every_n_steps=1",
        "stage.val_every_n_steps=2",
        "stage.batch_size=4",
        "stage.lr_patch_size=16",
        f"stage.optimizer.lr={LR0}",
        f"stage.scheduler.eta_min={ETA_MIN}",
        "data.num_workers=0",
        "data.repeat=4",
        "test_sets=[Set5]",
        f"paths.benchmark_dir={benchmark_dir}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    wall = time.monotonic() - started
    report = json.loads((run_dir / "benchmark.json").read_text())
    assert report["sets"]["Set5"]["images"] == 5

    # The LR schedule is cosine over the whole run, also across a fold at step 4.
    lrs = logged_lrs(run_dir)
    assert set(range(STEPS)) <= set(lrs), lrs
    for step in range(STEPS):
        expected = ETA_MIN + (LR0 - ETA_MIN) * (1 + math.cos(math.pi * step / STEPS)) / 2
        assert lrs[step] == pytest.approx(expected, rel=1e-6), (step, lrs)

    # model.pth and deploy.pth hold the best checkpoint's network, as trained and folded.
    best = Path(report["weights"])
    assert best.name.startswith("best-") and best.is_file()
    ckpt = torch.load(best, weights_only=True)
    model = torch.load(run_dir / "weights" / "model.pth", weights_only=True)
    deploy = torch.load(run_dir / "weights" / "deploy.pth", weights_only=True)
    folded_during_run = callbacks != "default"
    assert model["meta"]["form"] == ("deploy" if folded_during_run else "train")
    assert deploy["meta"]["form"] == "deploy" and model["meta"]["source"] == str(best)
    net_sd = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    if ckpt["sr_form"] == model["meta"]["form"]:
        assert net_sd.keys() == model["state_dict"].keys()
        assert all(torch.equal(net_sd[k], model["state_dict"][k]) for k in net_sd)
    train_net = EFDN(scale=4, channels=16, num_blocks=3, esa_channels=4, conv3x3=partial(make_edbb, mode="online"))
    if model["meta"]["form"] == "train":
        train_net.load_state_dict(model["state_dict"])
        reparameterize_model(train_net)
        refolded = train_net.state_dict()
        assert refolded.keys() == deploy["state_dict"].keys()
        for k, v in deploy["state_dict"].items():  # the same fold of the same weights
            assert torch.equal(refolded[k], v), k
    else:
        assert all(torch.equal(model["state_dict"][k], v) for k, v in deploy["state_dict"].items())

    # The test loop scored that deploy-form network in fp32: the separate evaluation gives the same numbers.
    for weights in ("deploy.pth",):  # model.pth folds to the same tensors (checked above)
        out = tmp_path / f"eval_{weights}"
        run(
            "sr_lightning.test",
            *MODEL,
            "scale=4",
            f"weights={run_dir / 'weights' / weights}",
            "test_sets=[Set5]",
            f"paths.benchmark_dir={benchmark_dir}",
            f"hydra.run.dir={out}",
            cwd=tmp_path,
        )
        separate = json.loads((out / "benchmark.json").read_text())["sets"]["Set5"]
        for key in ("psnr", "ssim"):
            assert round(separate[key], 4) == round(report["sets"]["Set5"][key], 4), (weights, key)
    print(
        f"{hardware} {precision} {callbacks}: Set5 {report['sets']['Set5']['psnr']:.4f} / "
        f"{report['sets']['Set5']['ssim']:.4f}, separate fp32 test {separate['psnr']:.4f} / {separate['ssim']:.4f}, "
        f"best={best.name}, train wall {wall:.1f} s"
    )
