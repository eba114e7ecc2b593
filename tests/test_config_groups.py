"""Config groups mean one thing each: every `_target_` accepts its keys, `stage` is a pure recipe whose optimizer and
schedule are written once, the hardware options reach Lightning (up to the GPU on a CPU machine), FDIWN variants
follow num_groups / num_wdib alone."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from compose import compose_cfg, group_options, packaged_yaml
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import OmegaConf

from sr_lightning.archs.fdiwn import FDIWN
from sr_lightning.config import conf_files

GROUPS = [
    "model",
    "loss",
    "stage",
    "hardware",
    "data",
    "logger",
    "callbacks",
    "paths",
    "experiment",
    "hparams_search",
    "budget",  # deprecated aliases (budget=cpu / gpu), kept composing
    "module",
    "trainer",
]
#: instantiate() keys that are not constructor arguments; `enabled` is the on/off switch of optional callbacks,
#: dropped by sr_lightning.utils.instantiate.instantiate_dict before instantiation.
META_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
#: what a training recipe holds (README "Config groups": stage)
RECIPE_KEYS = {
    "name",
    "max_steps",
    "val_every_n_steps",
    "lr_patch_size",
    "batch_size",
    "optimizer",
    "scheduler",
    "scheduler_interval",
}


def options(group: str) -> list[str]:
    """Selectable options: files whose name starts with `_` are bases pulled in by defaults lists."""
    return [o for o in group_options(group) if not Path(o).name.startswith("_")]


def signature_problems(node: Any, path: str = "") -> list[str]:
    """Keys of `_target_` nodes (anywhere under `node`, a plain container) that their target does not accept."""
    problems: list[str] = []
    if isinstance(node, dict):
        if "_target_" in node:
            params = inspect.signature(get_object(node["_target_"])).parameters.values()
            takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
            accepted = {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL} | META_KEYS
            meta = {"enabled"} if path.startswith("callbacks.") else set()
            problems += [
                f"{path}{key}: not an argument of {node['_target_']}"
                for key in node
                if not takes_any and key not in accepted | meta
            ]
        for key, value in node.items():
            problems += signature_problems(value, f"{path}{key}.")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            problems += signature_problems(value, f"{path}{i}.")
    return problems


def resolved(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)])
def test_every_target_accepts_its_keys(group, option, tmp_path):
    overrides = [f"{group}={option}"] + (["logger.wandb.offline=true"] if option in {"wandb", "many"} else [])
    assert signature_problems(resolved(compose_cfg("train", overrides, tmp_path))) == []


@pytest.mark.parametrize("model", options("model"))
def test_test_config_targets_accept_their_keys(model, tmp_path):
    cfg = compose_cfg("test", ["weights=x.pth", f"model={model}"], tmp_path)
    assert signature_problems(resolved(cfg)) == []


@pytest.mark.parametrize(
    ("override", "where"),
    [
        ("+model.chanels=48", "model.chanels"),
        ("+data.num_worker=2", "data.num_worker"),
        ("+stage.optimizer.betas2=0.9", "stage.optimizer.betas2"),
        ("+callbacks.ema.decays=0.9", "callbacks.ema.decays"),
        ("+trainer.max_step=10", "trainer.max_step"),
    ],
)
def test_a_misspelt_key_is_reported(override, where, tmp_path):
    problems = signature_problems(resolved(compose_cfg("train", [override], tmp_path)))
    assert f"{where}: not an argument" in "\n".join(problems)
    # nothing else is reported (module.net / module.optimizer interpolate model / stage.optimizer: same slip)
    assert {p.split(":")[0].rsplit(".", 1)[-1] for p in problems} == {where.rsplit(".", 1)[-1]}


def test_a_misspelt_model_key_fails_instantiation(tmp_path):
    cfg = compose_cfg("train", ["+model.chanels=48"], tmp_path)
    with pytest.raises(InstantiationException, match="unexpected keyword argument 'chanels'"):
        instantiate(cfg.model)


@pytest.mark.parametrize("hardware", ["cpu", "gpu"])
def test_a_precision_typo_fails(hardware, tmp_path):
    cfg = compose_cfg("train", [f"hardware={hardware}", "trainer.precision=bf16-mixd"], tmp_path)
    # Lightning validates the precision before it looks for a GPU: this is what the GPU options rely on below
    with pytest.raises(InstantiationException, match="Precision 'bf16-mixd' is invalid") as err:
        instantiate(cfg.trainer, logger=False)
    assert isinstance(err.value.__cause__, ValueError)


@pytest.mark.parametrize("hardware", ["gpu", "ddp"])
def test_gpu_hardware_instantiates_up_to_the_gpu(hardware, tmp_path):
    cfg = compose_cfg("train", [f"hardware={hardware}"], tmp_path)
    if torch.cuda.device_count() >= cfg.trainer.devices:
        trainer = instantiate(cfg.trainer, logger=False)
        assert trainer.num_devices == cfg.trainer.devices and trainer.precision == cfg.trainer.precision
        return
    # precision, strategy and every other argument were accepted: only the missing GPU stops it
    with pytest.raises(InstantiationException) as err:  # no GPU, or fewer than requested
        instantiate(cfg.trainer, logger=False)
    assert isinstance(err.value.__cause__, MisconfigurationException)


@pytest.mark.parametrize("stage", options("stage"))
def test_stage_is_a_pure_recipe(stage, tmp_path):
    """A stage option holds a recipe only, and choosing one changes nothing but the recipe and what reads it."""
    keys = set(OmegaConf.create(conf_files().joinpath("stage", f"{stage}.yaml").read_text()))
    assert keys <= RECIPE_KEYS | {"defaults"}  # the defaults list pulls in a base (`_base`, `_cosine`)
    base, chosen = (resolved(compose_cfg("train", ov, tmp_path)) for ov in ([], [f"stage={stage}"]))
    assert set(chosen["stage"]) == RECIPE_KEYS  # every key set (the `_base` leaves none `???`)
    recipe_readers = {
        "trainer": ("max_steps", "val_check_interval"),
        "data": ("lr_patch_size", "batch_size"),
        "module": ("optimizer", "scheduler", "scheduler_interval"),
    }
    for cfg in (base, chosen):
        del cfg["stage"]
        for node, keys in recipe_readers.items():
            for key in keys:
                del cfg[node][key]
    assert chosen == base


def test_optimizer_and_schedules_are_written_once():
    """Adam and the cosine schedule are written in the stage bases; options give numbers (fdiwn alone has StepLR,
    which imdn and rfdn inherit; pan alone has the warm restarts of its official options)."""
    written: dict[str, list[str]] = {}
    for name in packaged_yaml("stage"):
        recipe = OmegaConf.to_container(OmegaConf.create(conf_files().joinpath("stage", name).read_text()))
        for node in ("optimizer", "scheduler"):
            if "_target_" in (recipe.get(node) or {}):
                written.setdefault(recipe[node]["_target_"].rsplit(".", 1)[-1], []).append(name)
    assert written == {
        "Adam": ["_base.yaml"],
        "CosineAnnealingLR": ["_cosine.yaml"],
        "StepLR": ["fdiwn.yaml"],
        "CosineAnnealingWarmRestarts": ["pan.yaml"],
    }


def test_efdn_chain_stages_pick_their_data_loss_and_callbacks(tmp_path):
    """What the four EFDN experiments choose (the recipes themselves choose nothing): paper Sec. 4."""
    picks = {}
    for name in ("1_pretrain", "2_eg", "3_finetune", "4_reparam"):
        cfg = compose_cfg("train", [f"experiment=efdn/{name}", "target_scale=4"], tmp_path)
        train = cfg.data.train[0]._target_.rsplit(".", 1)[-1]
        picks[name] = (cfg.scale, train, cfg.loss._target_.rsplit(".", 1)[-1], "reparameterize" in cfg.callbacks)
    assert picks == {
        "1_pretrain": (2, "DIV2K", "L1Loss", False),
        "2_eg": (4, "DF2K", "EdgeGradientLoss", False),
        "3_finetune": (4, "DF2K", "MSELoss", False),
        "4_reparam": (4, "DIV2K", "MSELoss", True),
    }


@pytest.mark.parametrize("option", options("data"))
def test_data_options_set_every_datamodule_argument(option, tmp_path):
    """The shared `_loader` base gives every option all SRDataModule arguments (none left to code defaults)."""
    cfg = compose_cfg("train", [f"data={option}"], tmp_path)
    params = set(inspect.signature(get_object(cfg.data._target_)).parameters)
    assert set(cfg.data) == params | {"_target_"}


@pytest.mark.parametrize(("num_groups", "num_wdib", "schedule"), [(2, 3, (0, 0, 1, 1)), (3, 2, (0, 0, 1, 2, 1, 2))])
def test_num_groups_and_num_wdib_alone_define_an_fdiwn_variant(num_groups, num_wdib, schedule, tmp_path):
    overrides = ["model=fdiwn", f"model.num_groups={num_groups}", f"model.num_wdib={num_wdib}", "scale=3"]
    net = instantiate(compose_cfg("train", overrides, tmp_path).model).eval()
    assert isinstance(net, FDIWN) and net.schedule == schedule
    assert len(net.fswg) == num_groups and all(len(g.wdib) == num_wdib for g in net.fswg)
    with torch.no_grad():
        assert net(torch.rand(1, 3, 7, 9)).shape == (1, 3, 21, 27)


def test_fdiwn_m_is_fdiwn_with_two_groups(tmp_path):
    fdiwn_m = resolved(compose_cfg("train", ["model=fdiwn_m"], tmp_path))["model"]
    two_groups = resolved(compose_cfg("train", ["model=fdiwn", "model.num_groups=2"], tmp_path))["model"]
    assert fdiwn_m == two_groups and fdiwn_m["num_groups"] == 2


def test_readme_config_table_lists_every_option():
    """Every selectable option is named in its README row (and so documented); no row names a missing option."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for group in [*GROUPS, "hydra/launcher"]:
        row = re.search(rf"^\| `{group}` \| (.*?) \|", readme, flags=re.MULTILINE)
        assert row, f"README has no Config groups row for {group}"
        assert set(options(group)) == set(re.findall(r"`([\w/]+)`", row.group(1))), group
