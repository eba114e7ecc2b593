"""SRDataModule loaders and the conf/data/*.yaml configs (composed with Hydra)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from _data_helpers import make_div2k, make_flickr2k
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from sr_lightning.data.datamodule import SRDataModule
from sr_lightning.data.div2k import DIV2K
from sr_lightning.data.sample import SampleImages

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def _sample_dm(**kw) -> SRDataModule:
    args = dict(
        train=[SampleImages("train", 4)],
        val=SampleImages("heldout", 4),
        test={"sample": SampleImages("heldout", 4)},
        scale=4,
        lr_patch_size=12,
        batch_size=4,
        num_workers=0,
        repeat=2,
    )
    args.update(kw)
    return SRDataModule(**args)


def test_loaders_produce_batches_of_the_right_shapes(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        dm = _sample_dm(benchmark_dir=tmp_path / "no-shared-here", test_sets=["Set5", "Set14"])
    assert "skipping test sets Set5, Set14" in caplog.text
    assert dm.test_set_names == ["sample"] and dm.skipped_test_sets == ["Set5", "Set14"]
    assert dm.lr_source("sample") == "generated"
    dm.setup("fit")
    assert len(dm.train_dataset) == 20
    batch = next(iter(dm.train_dataloader()))
    assert batch["lr"].shape == (4, 3, 12, 12) and batch["hr"].shape == (4, 3, 48, 48)
    assert batch["lr"].dtype == torch.float32 and len(batch["name"]) == 4
    val = next(iter(dm.val_dataloader()))
    assert val["lr"].shape == (1, 3, 75, 112) and val["hr"].shape == (1, 3, 300, 448)  # chelsea 451x300
    loaders = dm.test_dataloader()
    assert len(loaders) == 1 and [b["name"][0] for b in loaders[0]] == ["chelsea", "camera", "coins"]


@pytest.mark.shared
def test_benchmark_test_sets_come_after_extra_sets(benchmark_dir):
    dm = _sample_dm(benchmark_dir=benchmark_dir, test_sets=["Set14", "Set5"])
    assert dm.test_set_names == ["sample", "Set14", "Set5"]
    assert [dm.lr_source(n) for n in dm.test_set_names] == ["generated", "official", "official"]
    loaders = dm.test_dataloader()
    assert [len(dl) for dl in loaders] == [3, 14, 5]
    baby = next(iter(loaders[2]))
    assert baby["name"] == ["baby"] and baby["lr"].shape == (1, 3, 128, 128)
    with pytest.raises(FileNotFoundError, match=r"'Urban100' not found.*sets there: Set14, Set5"):
        _sample_dm(benchmark_dir=benchmark_dir, test_sets=["Set5", "Urban100"])
    with pytest.raises(KeyError, match="no test set 'B100'"):
        dm.lr_source("B100")


def test_scale_mismatch_and_missing_train_are_clear_errors():
    with pytest.raises(ValueError, match="has scale 2, the datamodule has 4"):
        _sample_dm(val=SampleImages("heldout", 2))
    dm = SRDataModule(test={"sample": SampleImages("heldout", 4)}, num_workers=0)
    assert dm.val_dataloader() == []
    with pytest.raises(RuntimeError, match="no training data"):
        dm.train_dataloader()


def test_workers_are_persistent_and_batches_reproducible():
    def first_batches(seed: int) -> list[torch.Tensor]:
        dm = _sample_dm(num_workers=2, seed=seed, batch_size=5)
        dl = dm.train_dataloader()
        assert dl.persistent_workers and dl.num_workers == 2
        it = iter(dl)
        return [next(it)["hr"] for _ in range(2)]

    a, b, c = first_batches(7), first_batches(7), first_batches(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


# ---------------------------------------------------------------- Hydra configs


def _compose(tmp_path: Path, data: str, data_dir: Path, benchmark_dir: Path, shared_dir: Path):
    """Compose conf/data/<data>.yaml under a stand-in top-level config defining the keys it uses."""
    (tmp_path / "top").mkdir(exist_ok=True)
    (tmp_path / "top" / "config.yaml").write_text(
        "defaults:\n  - data: sample\n  - _self_\n"
        f"hydra:\n  searchpath:\n    - file://{CONF_DIR}\n"
        "scale: 2\ntest_sets: [Set5]\n"
        f"paths:\n  shared_dir: {shared_dir}\n  benchmark_dir: {benchmark_dir}\n  data_dir: {data_dir}\n"
        f"  cache_dir: {tmp_path / 'cache'}\n"
    )
    with initialize_config_dir(config_dir=str(tmp_path / "top"), version_base="1.3"):
        return compose("config", overrides=[f"data={data}", "data.num_workers=0"])


def test_data_configs_instantiate(tmp_path):
    make_div2k(tmp_path / "data", lr_scales=(2,))
    make_flickr2k(tmp_path / "data", lr_scales=())
    nowhere = tmp_path / "missing"
    for name in ("benchmark", "sample", "div2k", "df2k"):
        cfg = _compose(tmp_path, name, tmp_path / "data", nowhere, nowhere)
        assert cfg.data._target_ == "sr_lightning.data.datamodule.SRDataModule" and cfg.data.scale == 2
        dm = instantiate(cfg.data)
        assert isinstance(dm, SRDataModule) and dm.scale == 2 and dm.skipped_test_sets == ["Set5"]
        if name == "benchmark":
            assert not dm.train_sets and dm.val_set is None and dm.test_set_names == []
            continue
        dm.lr_patch_size = 8
        batch = next(iter(dm.train_dataloader()))
        assert batch["hr"].shape[1:] == (3, 16, 16)
    assert dm.train_sets[0].lr_source == "mixed"  # df2k: DIV2K x2 files + generated Flickr2K
    assert isinstance(dm.val_set, DIV2K) and dm.val_set.names == ["0801", "0802"]
    assert dm.train_sets[0].cache.cache_dir == tmp_path / "cache"


@pytest.mark.shared
def test_shared_train_config(tmp_path, shared, benchmark_dir):
    cfg = _compose(tmp_path, "shared_train", nowhere := tmp_path / "x", benchmark_dir, shared)
    assert not nowhere.exists()
    dm = instantiate(cfg.data)
    assert [len(d) for d in dm.train_sets] == [91, 199] and dm.val_set.name == "Set5"
    assert dm.test_set_names == ["Set5"] and dm.lr_source("Set5") == "official"
    dm.setup("fit")  # 48x2 = 96-pixel HR patches: T91 images smaller than that are skipped
    assert 280 <= dm.train_dataset.num_images < 290
