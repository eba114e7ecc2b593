"""The catalog (`sr_lightning.archs.catalog`) is the one table of networks and block factories that files may name;
it must agree with the packaged configs, and every file the package ever wrote must still load through it."""

from __future__ import annotations

from pathlib import Path

import pytest
from compose import packaged_yaml
from omegaconf import OmegaConf

from sr_lightning.archs.catalog import ARCHITECTURES, BLOCK_FACTORIES, architecture_by_target, block_factory
from sr_lightning.archs.model_config import build_network, check_model_config
from sr_lightning.config import conf_files
from sr_lightning.inference.detect import detect_model
from sr_lightning.weights import load_weights
from sr_lightning.weights_file import read_weights

LEGACY = Path(__file__).parent / "data" / "legacy"


def _targets(group: str) -> set[str]:
    found = set()
    for name in packaged_yaml(group):
        node = OmegaConf.create(conf_files().joinpath(group, name).read_text())
        if node.get("_target_"):
            found.add(str(node["_target_"]))
    return found


def test_catalog_agrees_with_the_packaged_configs() -> None:
    assert _targets("model") == {a.target for a in ARCHITECTURES}
    assert _targets("block") == set(BLOCK_FACTORIES)
    assert len({a.name for a in ARCHITECTURES}) == len(ARCHITECTURES)
    for arch in ARCHITECTURES:
        assert f"{arch.cls.__module__}.{arch.cls.__name__}".startswith(arch.target.rsplit(".", 1)[0])
        assert architecture_by_target(arch.target) is arch
        for alias in arch.aliases:
            assert architecture_by_target(alias) is arch


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.name)
def test_training_options_are_the_packaged_ones(arch) -> None:
    packaged = OmegaConf.to_container(
        OmegaConf.create(conf_files().joinpath("model", f"{arch.name.lower()}.yaml").read_text()), resolve=False
    )
    for key, value in arch.training_options.items():
        assert packaged[key] == dict(value), key


def test_block_factories_are_exact_names_only() -> None:
    for target in BLOCK_FACTORIES:
        assert block_factory(target) is not None
    for near in ("sr_lightning.archs.edbb", "sr_lightning.archs.edbb.make_edbb.__globals__", "make_edbb",
                 "sr_lightning.archs.edbb.make_edbbx", " sr_lightning.archs.edbb.make_edbb"):  # fmt: skip
        assert block_factory(near) is None
        assert architecture_by_target(near) is None


@pytest.mark.parametrize("name", ["efdn_weights.pth", "efdn.ckpt", "fdiwn_weights.pth", "fdiwn.ckpt"])
def test_every_legacy_fixture_loads_through_the_table(name: str) -> None:
    wf = read_weights(LEGACY / name)
    assert wf.model is not None and check_model_config(wf.model) == wf.model
    net = build_network(wf.model)
    assert load_weights(net, wf) in {"sr_lightning", "lightning"}
    assert detect_model(wf).config["_target_"] == wf.model["_target_"]
