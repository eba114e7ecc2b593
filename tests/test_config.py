"""Every config group option composes and instantiates; top-level keys reach model, data and trainer."""

from __future__ import annotations

import pytest
import torch
from _data_helpers import make_div2k, make_flickr2k
from compose import compose_cfg
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import OmegaConf
from test_config_groups import GROUPS, options  # the option names (files starting with `_` are bases, not options)

from sr_lightning.utils.instantiate import instantiate_dict


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), f"conf/{group}/ has no options"


@pytest.fixture(scope="module")
def stand_in_data(tmp_path_factory):
    """DIV2K / Flickr2K folders in their real layout, made of small real image crops."""
    root = tmp_path_factory.mktemp("data")
    make_div2k(root, lr_scales=(4,))
    make_flickr2k(root, lr_scales=())
    return root


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)])
def test_option_composes_and_instantiates(group, option, tmp_path, stand_in_data):
    overrides = [f"{group}={option}", f"paths.data_dir={stand_in_data}", f"paths.cache_dir={tmp_path / 'cache'}"]
    if option in {"wandb", "many"}:
        overrides.append("logger.wandb.offline=true")
    cfg = compose_cfg("train", overrides, tmp_path)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    if group == "hparams_search":
        assert cfg.optimized_metric
        return
    if group in {"hardware", "trainer"}:
        if cfg.trainer.accelerator == "gpu" and torch.cuda.device_count() < cfg.trainer.devices:
            # every argument (precision included) is validated before Lightning looks for the GPUs
            with pytest.raises(InstantiationException) as err:  # no GPU, or fewer than requested
                instantiate(cfg.trainer, logger=False)
            assert isinstance(err.value.__cause__, MisconfigurationException)
            return
        trainer = instantiate(cfg.trainer, logger=False)
        assert trainer.max_steps == cfg.stage.max_steps
        return
    if group in {"model", "experiment"}:
        net = instantiate(cfg.model)
        assert isinstance(net, torch.nn.Module)
    if group == "loss":
        loss = instantiate(cfg.loss)
        x = torch.rand(1, 3, 8, 8)
        assert torch.isfinite(loss(x, x.flip(-1)))
    if group in {"stage", "module", "experiment"}:
        module = instantiate(cfg.module)
        assert module.configure_optimizers()
    if group in {"data", "experiment"}:
        dm = instantiate(cfg.data)
        assert dm.scale == cfg.scale
    if group in {"logger", "callbacks", "experiment"}:
        for node in ("logger", "callbacks") if group == "experiment" else (group,):
            for obj in instantiate_dict(cfg.get(node)):
                assert obj is not None


def test_scale_reaches_model_and_data(tmp_path):
    cfg = compose_cfg("train", ["model=efdn", "scale=3", "trainer.max_steps=100", "trainer.devices=2"], tmp_path)
    assert cfg.model.scale == 3 and cfg.data.scale == 3 and cfg.module.scale == 3
    assert cfg.trainer.max_steps == 100 and cfg.trainer.devices == 2
    assert cfg.stage.scheduler.T_max == 100  # the schedule follows the trainer budget
    net = instantiate(cfg.model)
    assert net(torch.rand(1, 3, 17, 19)).shape == (1, 3, 51, 57)


def test_test_config_requires_weights(tmp_path):
    cfg = compose_cfg("test", ["weights=x.pth", "scale=2"], tmp_path)
    module = instantiate(cfg.module)
    assert module.loss is None and module.scale == 2
    assert instantiate(cfg.trainer).logger is None
    assert cfg.test_sets == ["Set5", "Set14"]
