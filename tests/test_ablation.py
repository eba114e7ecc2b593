"""The EFDN paper's Table 3 as configs: 16 `experiment=ablation/...` rows on one shared base, their recipes
(`stage=ablation_gpu` / `ablation_cpu`; `budget=gpu` / `cpu` the deprecated aliases), the paper's numbers in one data
file, and the sweep that trains the rows and writes the Table-3-style summary (test-set scores of the deploy form
beside the paper's)."""

from __future__ import annotations

import copy
import csv
import os
import subprocess
import sys

import pytest
import torch
from compose import compose_cfg, compose_with_hydra, group_options
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sr_lightning.archs.edbb import EDBB
from sr_lightning.archs.forms import to_deploy_form
from sr_lightning.archs.rep_block import RepBlock
from sr_lightning.config import conf_files
from sr_lightning.utils.sweep_summary import (
    PAPER_TABLE,
    add_paper_numbers,
    collect,
    paper_numbers,
    write_summary,
    write_tables,
)
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
    swept = [r.strip() for r in sweep.hydra.sweeper.params.experiment.split(",")]
    assert sorted(swept) == sorted(f"ablation/{r}" for r in ROWS)  # each row once, not a product
    # the paper's numbers: one table, a row for each experiment, nothing else
    table = OmegaConf.create(conf_files().joinpath(*PAPER_TABLE).read_text())
    assert list(table.rows) == swept and list(table.sets) == ["Set5", "Set14", "B100", "Urban100"]


@pytest.mark.parametrize("row", ROWS)
def test_row_builds_its_network_block_and_loss(row, tmp_path):
    network, rest = row.split("_", 1)
    block, loss = rest.rsplit("_", 1)
    cfg = compose_cfg("train", [f"experiment=ablation/{row}"], tmp_path)
    assert cfg.scale == 2 and set(paper_numbers(f"ablation/{row}")) == {"Set5", "Set14", "B100", "Urban100"}
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


#: the commands of each recipe: the deprecated alias, and what it now means
RECIPES = {
    "gpu": (["budget=gpu"], [], ["stage=ablation_gpu", "data=div2k"]),
    "cpu": (["budget=cpu"], ["stage=ablation_cpu", "data=shared_train", "data.num_workers=1"]),
}


@pytest.mark.parametrize(("budget", "data", "steps"), [("gpu", "DIV2K", 200_000), ("cpu", "HRFolderDataset", 2_000)])
def test_budgets_set_the_recipe_and_data(budget, data, steps, tmp_path):
    cfg = compose_cfg("train", ["experiment=ablation/fsrcnn_plain_l1", f"budget={budget}"], tmp_path)
    assert cfg.trainer.max_steps == steps == cfg.stage.max_steps and cfg.stage.name == f"ablation_{budget}"
    assert cfg.data.train[0]._target_.endswith(data)
    # one budget for every row: the rows differ in network, block and loss only
    other = compose_cfg("train", ["experiment=ablation/vdsr_edbb_eg", f"budget={budget}"], tmp_path)
    assert OmegaConf.to_container(other.stage) == OmegaConf.to_container(cfg.stage)
    # the deprecated alias is the new command, which the GPU budget needs none of (the experiment's default)
    row = ["experiment=ablation/fsrcnn_plain_l1"]
    composed = [
        OmegaConf.to_container(compose_cfg("train", row + ov, tmp_path), resolve=True) for ov in RECIPES[budget]
    ]
    assert all(c == composed[0] for c in composed)


def test_rows_differ_in_network_block_and_loss_only(tmp_path):
    def rest(row: str) -> dict:
        cfg = OmegaConf.to_container(compose_cfg("train", [f"experiment=ablation/{row}"], tmp_path), resolve=True)
        return {k: v for k, v in cfg.items() if k not in {"model", "loss", "module"}}

    first = rest(ROWS[0])
    assert all(rest(row) == first for row in ROWS[1:])


def test_the_alias_says_it_is_deprecated(caplog):
    cfg = compose_with_hydra("train", ["experiment=ablation/fsrcnn_plain_l1", "budget=cpu"])
    with caplog.at_level("WARNING"):
        instantiate(cfg.hydra.callbacks.deprecated_budget).on_job_start(config=cfg)
    assert "budget=cpu is deprecated" in caplog.text
    assert "stage=ablation_cpu data=shared_train data.num_workers=1" in caplog.text


def test_a_rows_summary_gets_the_papers_numbers(tmp_path):
    """The sweep summary takes a run's reference numbers from the one table, by the run's experiment option."""
    for run, experiment in (("0", "ablation/fsrcnn_ecb_l1"), ("1", "efdn/1_pretrain")):
        (tmp_path / run).mkdir()
        write_summary(tmp_path / run, {"status": "completed", "val_psnr": 33.0, "macs_720p": 9_733_999_104})
        add_paper_numbers(tmp_path / run, experiment)
    rows = collect(tmp_path)
    assert rows[0]["paper"] == {"Set5": "37.17/0.9572", "Set14": "32.80/0.9103", "B100": "31.59/0.8915",
                                "Urban100": "30.09/0.9044"}  # fmt: skip
    assert "paper" not in rows[1]  # an experiment without reference numbers
    table = write_tables(tmp_path, rows)[1].read_text()
    assert "| paper Set5 | paper Set14 | paper B100 | paper Urban100 |" in table
    assert "| 9.73 G |" in table and "| 37.17/0.9572 | 32.80/0.9103 | 31.59/0.8915 | 30.09/0.9044 |" in table


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
