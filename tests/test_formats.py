"""Format versions: files written by older code keep loading and compute what they computed when saved.

The legacy files under tests/data/legacy/ were written by the code before issue 8 (no format version, `.scale` key
names; see the README there), with the outputs their networks computed on a real LR crop, in float64.
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from _lightning_helpers import sample_datamodule
from _tolerance import assert_within, network_tolerance
from hydra.utils import instantiate
from torch import nn

from sr_lightning.archs.forms import network_form, reparameterize_model
from sr_lightning.data.io import load_image
from sr_lightning.data.sample import sample_files
from sr_lightning.formats import CHECKPOINT_KEY, FORMAT_VERSION, UPGRADES, WEIGHTS_KEY, upgrade_state_dict
from sr_lightning.lightning.module import SRModule
from sr_lightning.weights import load_weights, read_meta, read_state_dict, save_weights

LEGACY = Path(__file__).parent / "data" / "legacy"
NETS = ("efdn", "fdiwn")


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return torch.load(LEGACY / "expected_outputs.pt", map_location="cpu", weights_only=True)


def legacy_input() -> torch.Tensor:
    """The input the outputs were recorded on: a 16x17 uint8 crop of `astronaut.png`, shipped inside scikit-image
    (no image is stored with the legacy files)."""
    img = load_image(sample_files("train")[0])
    return torch.from_numpy(img[40:56, 30:47].copy()).permute(2, 0, 1)[None]


def _config(name: str) -> dict:
    return read_meta(LEGACY / f"{name}_weights.pth")["model"]


def _output64(net: nn.Module, crop: torch.Tensor) -> torch.Tensor:
    """The network's output on the uint8 crop, in float64 (as recorded): the weights decide it, not the rounding."""
    twin = copy.deepcopy(net).double().eval()
    with torch.no_grad():
        return twin(crop.double() / 255)


def _assert_recorded(net: nn.Module, expected: dict[str, torch.Tensor], key: str) -> None:
    # Two float64 evaluations of one network (two machines, two conv algorithms): tests/_tolerance.py.
    ref = expected[key]
    assert_within(_output64(net, legacy_input()), ref, network_tolerance(ref), key)


@pytest.mark.parametrize("name", NETS)
def test_legacy_files_predate_the_version_and_the_renames(name: str) -> None:
    """The files exercise the upgrade: no version key, the old `.scale` names (which today's networks lack)."""
    weights = torch.load(LEGACY / f"{name}_weights.pth", map_location="cpu", weights_only=True)
    ckpt = torch.load(LEGACY / f"{name}.ckpt", map_location="cpu", weights_only=True)
    assert WEIGHTS_KEY not in weights and CHECKPOINT_KEY not in ckpt
    assert any(k.endswith(".scale") for k in weights["state_dict"])
    assert any(k.endswith(".scale") for k in ckpt["state_dict"])
    assert not any("scale" in k for k in instantiate(_config(name)).state_dict())  # "scale" = the SR factor only


@pytest.mark.parametrize("name", NETS)
def test_legacy_weights_file_computes_its_recorded_outputs(name: str, expected: dict[str, torch.Tensor]) -> None:
    net = instantiate(_config(name))
    assert load_weights(net, LEGACY / f"{name}_weights.pth") == "sr_lightning"
    _assert_recorded(net, expected, f"{name}_weights")


@pytest.mark.parametrize("name", NETS)
def test_legacy_checkpoint_computes_its_recorded_outputs(name: str, expected: dict[str, torch.Tensor]) -> None:
    net = instantiate(_config(name))
    assert load_weights(net, LEGACY / f"{name}.ckpt") == "lightning"
    _assert_recorded(net, expected, f"{name}_ckpt")
    module = SRModule(instantiate(_config(name)), scale=2)  # the LightningModule's own loader
    module.load_network_weights(LEGACY / f"{name}.ckpt")
    _assert_recorded(module.net, expected, f"{name}_ckpt")


def test_legacy_training_form_loads_into_the_deploy_form() -> None:
    """A training-form EFDN file into a folded EFDN: the fold of the legacy weights, computing what they compute."""
    cfg = _config("efdn")
    trained = instantiate(cfg).eval()
    load_weights(trained, LEGACY / "efdn_weights.pth")
    deploy = instantiate({**cfg, "conv3x3": None}).eval()
    assert network_form(trained) == "train" and network_form(deploy) == "deploy"
    load_weights(deploy, LEGACY / "efdn_weights.pth")
    crop = legacy_input().float() / 255
    with torch.no_grad():
        online = trained(crop)
        reparameterize_model(trained)
        folded_sd = trained.state_dict()
        assert folded_sd.keys() == deploy.state_dict().keys()
        assert all(torch.equal(v, deploy.state_dict()[k]) for k, v in folded_sd.items())
        # Exact: the online EDBB convolves with the very merged kernel the fold copies (as in test_edbb.py).
        assert torch.equal(deploy(crop), online)


class _RecordStart(L.Callback):
    """Keeps a float64 copy of the network as the resumed fit starts (after the checkpoint was restored)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.net = copy.deepcopy(pl_module.net)
        self.step = trainer.global_step


@pytest.mark.slow
@pytest.mark.parametrize("name", NETS)
def test_legacy_checkpoint_resumes(name: str, expected: dict[str, torch.Tensor], tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = SRModule(
        instantiate(_config(name)), loss=nn.L1Loss(), optimizer=partial(torch.optim.SGD, lr=1e-3), scale=2
    )
    record = _RecordStart()
    trainer = L.Trainer(
        max_steps=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        callbacks=[record],
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=sample_datamodule(batch_size=2), ckpt_path=LEGACY / f"{name}.ckpt")
    assert record.step == 1 and trainer.global_step == 3  # resumed after the saved step, then trained two more
    _assert_recorded(record.net, expected, f"{name}_ckpt")
    trainer.save_checkpoint(tmp_path / "new.ckpt")
    saved = torch.load(tmp_path / "new.ckpt", map_location="cpu", weights_only=True)
    assert saved[CHECKPOINT_KEY] == FORMAT_VERSION
    assert not any(k.endswith(".scale") for k in saved["state_dict"])


def test_files_saved_now_carry_the_current_version(tmp_path: Path) -> None:
    net = instantiate(_config("fdiwn"))
    path = save_weights(net, tmp_path / "w.pth")
    assert torch.load(path, weights_only=True)[WEIGHTS_KEY] == FORMAT_VERSION
    ckpt: dict = {}
    SRModule(net, scale=2).on_save_checkpoint(ckpt)
    assert ckpt[CHECKPOINT_KEY] == FORMAT_VERSION
    sd, _ = read_state_dict(path)  # the current version is read as it is
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in sd.items()) and sd.keys() == net.state_dict().keys()


def test_a_future_version_is_a_clear_error(tmp_path: Path) -> None:
    newer = FORMAT_VERSION + 1
    obj = torch.load(LEGACY / "efdn_weights.pth", weights_only=True) | {WEIGHTS_KEY: newer}
    torch.save(obj, tmp_path / "w.pth")
    with pytest.raises(ValueError, match=f"format version {newer} by a newer sr_lightning"):
        load_weights(instantiate(_config("efdn")), tmp_path / "w.pth")
    ckpt = torch.load(LEGACY / "efdn.ckpt", weights_only=True) | {CHECKPOINT_KEY: newer}
    torch.save(ckpt, tmp_path / "c.ckpt")
    with pytest.raises(ValueError, match="newer sr_lightning"):
        read_state_dict(tmp_path / "c.ckpt")
    with pytest.raises(ValueError, match="newer sr_lightning"):
        SRModule(instantiate(_config("efdn")), scale=2).on_load_checkpoint(ckpt)
    with pytest.raises(ValueError, match="not a non-negative integer"):
        upgrade_state_dict({}, "1")  # type: ignore[arg-type]


def test_one_upgrade_per_version_renames_only_its_keys() -> None:
    assert len(UPGRADES) == FORMAT_VERSION
    old = {
        "blocks.0.conv2.sobel_x.scale": torch.ones(2),
        "conv.laplacian.scale": torch.ones(2),
        "fswg.0.gain_x.gain": torch.ones(1),  # already new: untouched
        "fswg.0.wdib.0.scf.scale_q.scale": torch.ones(1),
        "fswg.0.residual.scale_res.scale": torch.ones(1),
        "head.scale": torch.ones(1),  # not one of the renamed modules
        "scale_x.weight": torch.ones(1),
    }
    assert list(upgrade_state_dict(old, 0)) == [
        "blocks.0.conv2.sobel_x.gain",
        "conv.laplacian.gain",
        "fswg.0.gain_x.gain",
        "fswg.0.wdib.0.scf.gain_q.gain",
        "fswg.0.residual.gain_res.gain",
        "head.scale",
        "scale_x.weight",
    ]
    assert upgrade_state_dict(old, FORMAT_VERSION) == old  # the current version is left as it is
