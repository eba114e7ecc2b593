"""The EFDN paper's Table 3 as configs: 16 `experiment=ablation/...` rows, the `budget` group, and the sweep that
trains them and writes the Table-3-style summary (test-set scores of the deploy form beside the paper's)."""

from __future__ import annotations

import copy
import csv
import os
import subprocess
import sys

import pytest
import torch
from compose import compose_cfg, group_options
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sr_lightning.archs.deploy import to_deploy_form
from sr_lightning.archs.edbb import EDBB
from sr_lightning.archs.rep_block import RepBlock
from sr_lightning.config import conf_files
from sr_lightning.weights import count_parameters

ROWS = [o.removeprefix("ablation/") for o in group_options("experiment") if o.startswith("ablation/")]
#: deploy-form parameters at x2 in RGB: every row of a network folds to the same plain network
DEPLOY_PARAMS = {"fsrcnn": 24_683, "vdsr": 668_227, "efdn": 260_604}
#: branches of each Table-3 block (EFDN paper Table 3's columns)
BRANCHES = {
    "repvgg": {"conv3x3", "conv1x1", "identity"},
    "dbb": {"conv3x3", "conv1x1", "expand", "avgpool"},
    "ecb": {"conv3x3", "expand", "sobel_x", "sobel_y", "laplacian"},
    "edbb": {"conv3x3", "conv1x1", "identity", "expand", "sobel_x", "sobel_y", "laplacian"},
    "edbb_no_conv1x1": {"conv3x3", "identity", "expand", "sobel_x", "sobel_y", "laplacian"},
    "edbb_no_identity": {"conv3x3", "conv1x1", "expand", "sobel_x", "sobel_y", "laplacian"},
    "edbb_avgpool": {"conv3x3", "conv1x1", "identity", "expand", "avgpool"},
}


def test_sixteen_rows_seven_fsrcnn_seven_vdsr_two_efdn():
    networks = [row.split("_")[0] for row in ROWS]
    assert len(ROWS) == 16 and [networks.count(n) for n in ("fsrcnn", "vdsr", "efdn")] == [7, 7, 2]
    sweep = OmegaConf.create(conf_files().joinpath("hparams_search", "ablation_table3.yaml").read_text())
    assert sorted(sweep.hydra.sweeper.params.experiment.split(",")) == sorted(f"ablation/{r}" for r in ROWS)


@pytest.mark.parametrize("row", ROWS)
def test_row_builds_its_network_block_and_loss(row, tmp_path):
    network, rest = row.split("_", 1)
    block, loss = rest.rsplit("_", 1)
    cfg = compose_cfg("train", [f"experiment=ablation/{row}"], tmp_path)
    assert cfg.scale == 2 and set(cfg.paper) == {"Set5", "Set14", "B100", "Urban100"}
    assert list(cfg.test_sets) == ["Set5", "Set14"] and list(cfg.data.optional_test_sets) == ["B100", "Urban100"]
    torch.manual_seed(0)
    net = instantiate(cfg.model)
    assert type(net).__name__.lower() == network
    blocks = [m for m in net.modules() if isinstance(m, RepBlock)]
    if block == "plain":
        assert not blocks and cfg.model.conv3x3 is None
    else:
        assert blocks and all(set(b.branch_names) == BRANCHES[block] for b in blocks)
    deploy = copy.deepcopy(net)
    to_deploy_form(deploy)
    assert count_parameters(deploy) == DEPLOY_PARAMS[network]
    criterion = instantiate(cfg.loss)
    assert type(criterion).__name__ == ("L1Loss" if loss == "l1" else "EdgeGradientLoss")
    if loss == "eg":  # λ from the EDBB gains where there is an EDBB, the fixed 1e-3 per term where there is none
        assert cfg.loss.lambdas == ("auto" if block == "edbb" else [1e-3, 1e-3, 1e-3])
        assert block in {"plain", "edbb"} and (block == "edbb") == any(isinstance(b, EDBB) for b in blocks)


@pytest.mark.parametrize(("budget", "data", "steps"), [("gpu", "DIV2K", 200_000), ("cpu", "HRFolderDataset", 2_000)])
def test_budgets_set_the_recipe_and_data(budget, data, steps, tmp_path):
    cfg = compose_cfg("train", ["experiment=ablation/fsrcnn_plain_l1", f"budget={budget}"], tmp_path)
    assert cfg.trainer.max_steps == steps == cfg.stage.max_steps and cfg.stage.name == f"ablation_{budget}"
    assert cfg.data.train[0]._target_.endswith(data)
    # one budget for every row: the rows differ in network, block and loss only
    other = compose_cfg("train", ["experiment=ablation/vdsr_edbb_eg", f"budget={budget}"], tmp_path)
    assert OmegaConf.to_container(other.stage) == OmegaConf.to_container(cfg.stage)


@pytest.mark.slow
def test_sweep_writes_the_table3_summary(benchmark_dir, tmp_path):
    """Two rows through the real sweep (tiny budget): per-row Set5 scores of the deploy form beside the paper's."""
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "sr_lightning.train", "hparams_search=ablation_table3"]
    cmd += ["experiment=ablation/fsrcnn_plain_eg,ablation/fsrcnn_ecb_l1", "data=sample", "test_sets=[Set5]"]
    cmd += ["trainer.max_steps=2", "stage.val_every_n_steps=2", "stage.batch_size=2", "stage.lr_patch_size=16"]
    cmd += ["data.num_workers=0", f"paths.benchmark_dir={benchmark_dir}", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = {r["run"]: r for r in csv.DictReader((sweep / "summary.csv").open())}
    assert "experiment=ablation/fsrcnn_plain_eg" in rows["0"]["overrides"]
    assert (rows["0"]["paper_Set5"], rows["1"]["paper_Set5"]) == ("37.14/0.9571", "37.17/0.9572")
    for row in rows.values():
        assert int(row["num_params"]) == DEPLOY_PARAMS["fsrcnn"] and 5 < float(row["Set5_psnr"]) < 40
    assert int(rows["0"]["num_params_train"]) == DEPLOY_PARAMS["fsrcnn"] < int(rows["1"]["num_params_train"])
    table = (sweep / "summary.md").read_text()
    assert "| Set5 | paper Set5 | paper Set14 | paper B100 | paper Urban100 |" in table
    assert f"{float(rows['1']['Set5_psnr']):.2f}/{float(rows['1']['Set5_ssim']):.4f} | 37.17/0.9572 |" in table
