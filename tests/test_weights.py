"""`load_weights` reads every kind of weights file and fails clearly on a mismatch."""

from __future__ import annotations

import pytest
import torch

from sr_lightning.archs.efdn import EFDN
from sr_lightning.lightning.module import SRModule
from sr_lightning.weights import load_weights, read_state_dict, save_weights


@pytest.fixture(scope="module")
def net() -> EFDN:
    torch.manual_seed(0)
    return EFDN(scale=2)


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_round_trip_sr_lightning_format(net, tmp_path):
    path = save_weights(net, tmp_path / "w" / "model.pth", {"scale": 2})
    other = EFDN(scale=2)
    assert load_weights(other, path) == "sr_lightning" and same(net, other)
    assert not list(tmp_path.rglob("*.tmp"))


def test_lightning_checkpoint(net, tmp_path):
    import lightning as L

    module = SRModule(net, torch.nn.L1Loss(), scale=2)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "x.ckpt")
    other = EFDN(scale=2)
    assert load_weights(other, tmp_path / "x.ckpt") == "lightning" and same(net, other)


@pytest.mark.parametrize("wrapper", [None, "params", "params_ema", "state_dict"])
def test_plain_and_wrapped_state_dicts(net, tmp_path, wrapper):
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save(sd if wrapper is None else {wrapper: sd}, tmp_path / "w.pth")
    other = EFDN(scale=2)
    assert load_weights(other, tmp_path / "w.pth") == "official" and same(net, other)


def test_official_checkpoint_is_converted(official_weights_dir):
    sd, kind = read_state_dict(official_weights_dir / "efdn_x2_official.pth")
    assert kind == "official" and any(k.startswith("cells.") for k in sd)
    net = EFDN(scale=2)
    load_weights(net, official_weights_dir / "efdn_x2_official.pth")
    assert torch.equal(net.state_dict()["tail.weight"], sd["tail.0.weight"])


def test_mismatch_errors_are_clear(net, tmp_path):
    path = save_weights(net, tmp_path / "x2.pth")
    with pytest.raises(RuntimeError, match="does not fit EFDN"):
        load_weights(EFDN(scale=4), path)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_weights(net, tmp_path / "missing.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a state dict"):
        load_weights(net, tmp_path / "list.pth")
