"""The paper's 4-stage EFDN schedule, end to end with a tiny budget, through the real entry points."""

from __future__ import annotations

import json

import pytest
import torch
from test_entry_points import run

from sr_lightning.archs.efdn import EFDN
from sr_lightning.weights import load_weights

pytestmark = pytest.mark.slow

TINY = (
    "trainer.max_steps=2",
    "trainer.log_every_n_steps=1",
    "stage.val_every_n_steps=2",
    "stage.batch_size=2",
    "stage.lr_patch_size=24",
    "data.num_workers=0",
    "data.repeat=1",
    "test=false",
)


def test_four_stage_chain_x4(train_dir, benchmark_dir, tmp_path):
    logs = tmp_path / "logs"
    common = (
        *TINY,
        "data=shared_train",
        "target_scale=4",
        f"paths.log_dir={logs}",
        f"paths.benchmark_dir={benchmark_dir}",
    )
    for stage in ("1_pretrain", "2_eg", "3_finetune", "4_reparam"):
        # stage 2 with λ = auto: taken at fit start from the EDBB edge-branch scales of the stage-1 network
        extra = ("loss.lambdas=auto",) if stage == "2_eg" else ()
        run("sr_lightning.train", f"experiment=efdn/{stage}", *common, *extra, cwd=tmp_path)
        assert (logs / "efdn_x4" / stage / "weights" / "model.pth").is_file(), stage

    chain = logs / "efdn_x4"
    header = next((chain / "2_eg").glob("csv/**/metrics.csv")).read_text().splitlines()[0].split(",")
    assert {"train/l1", "train/sobel_x", "train/sobel_y", "train/laplacian", "train/loss"} <= set(header)
    eg_ckpt = torch.load(chain / "2_eg" / "checkpoints" / "last.ckpt", weights_only=False)
    lambdas = eg_ckpt["state_dict"]["loss.lambdas"]
    assert torch.isfinite(lambdas).all() and (lambdas > 0).all()
    assert lambdas.sum().item() == pytest.approx(3e-3, rel=1e-5)  # auto λ sum to loss.auto_factor
    stage1 = torch.load(chain / "1_pretrain" / "weights" / "model.pth", weights_only=True)["state_dict"]
    stage2 = torch.load(chain / "2_eg" / "weights" / "model.pth", weights_only=True)["state_dict"]
    assert stage1["tail.weight"].shape[0] == 3 * 2**2 and stage2["tail.weight"].shape[0] == 3 * 4**2
    # stage 2 started from stage 1: apart from the re-initialised upsampler, weights moved only by 2 small steps
    head = next(k for k in stage1 if k.startswith("head.") and k.endswith("weight"))
    assert (stage1[head] - stage2[head]).abs().max() < 0.05

    # Stage 4 folded every EDBB at fit start and exported the deploy form: keys of the plain EFDN, x4 params.
    deploy = chain / "4_reparam" / "weights" / "deploy.pth"
    plain = EFDN(scale=4)
    assert load_weights(plain, deploy) == "sr_lightning"
    assert sum(p.numel() for p in plain.parameters()) == 276_192
    ckpt = torch.load(chain / "4_reparam" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["sr_form"] == "deploy"

    # The test entry point evaluates it with the default (training-form) model config: loading folds the model.
    out = tmp_path / "eval"
    run(
        "sr_lightning.test",
        "scale=4",
        f"weights={deploy}",
        "test_sets=[Set5]",
        f"paths.benchmark_dir={benchmark_dir}",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    report = json.loads((out / "benchmark.json").read_text())
    assert report["num_params"] == 276_192 and report["sets"]["Set5"]["images"] == 5
