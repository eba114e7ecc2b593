"""The Reparameterize callback folds any network's re-parameterizable blocks, keeps training, records the form
in checkpoints and exports deploy weights (real photographs from the embedded sample data)."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from _lightning_helpers import sample_datamodule
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from sr_lightning.archs.edbb import EDBB, make_edbb
from sr_lightning.archs.forms import network_form, reparameterize_model
from sr_lightning.data.sample import SampleImages
from sr_lightning.lightning.callbacks import Reparameterize
from sr_lightning.lightning.module import SRModule
from sr_lightning.weights import load_weights, save_weights


def tiny_net() -> nn.Module:
    """Not EFDN: any network holding re-parameterizable blocks."""
    torch.manual_seed(0)
    no_identity = ("conv3x3", "conv1x1", "expand", "sobel_x", "sobel_y", "laplacian")
    return nn.Sequential(
        make_edbb(3, 8, branches=no_identity),
        nn.PReLU(8),
        make_edbb(8, 8),
        nn.PReLU(8),
        make_edbb(8, 12, branches=no_identity),
        nn.PixelShuffle(2),
    )


def fit(net: nn.Module, tmp_path, callback: Reparameterize, max_steps: int, ckpt_path=None) -> SRModule:
    module = SRModule(net, nn.L1Loss(), optimizer=lambda params: torch.optim.Adam(params, lr=1e-3), scale=2)
    trainer = L.Trainer(
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        default_root_dir=tmp_path,
        callbacks=[callback, ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)],
    )
    trainer.fit(module, datamodule=sample_datamodule(), ckpt_path=ckpt_path)
    return module


def test_fold_mid_training_rebuilds_the_optimizer(tmp_path):
    net = tiny_net()
    seen: list[str] = []

    class Spy(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            seen.append(network_form(pl_module.net))
            if trainer.global_step == 4:  # the optimizer now trains the folded convolutions
                params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
                assert params == {id(p) for p in pl_module.parameters()}

    module = SRModule(net, nn.L1Loss(), optimizer=lambda params: torch.optim.Adam(params, lr=1e-3), scale=2)
    trainer = L.Trainer(
        max_steps=4,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        callbacks=[Reparameterize(at=2, unit="step"), Spy()],
    )
    trainer.fit(module, datamodule=sample_datamodule())
    assert seen == ["train", "train", "deploy", "deploy"], seen
    assert not any(isinstance(m, EDBB) for m in module.net.modules())


def test_fit_start_fold_export_and_resume(tmp_path):
    export = tmp_path / "deploy.pth"
    module = fit(tiny_net(), tmp_path, Reparameterize(at="fit_start"), max_steps=2)
    assert network_form(module.net) == "deploy"
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert ckpt["sr_form"] == "deploy"

    # Deploy weights load into a freshly built training-form network (which folds) and match.
    save_weights(module.net, export)
    fresh = tiny_net()
    load_weights(fresh, export)
    x = SampleImages("heldout", scale=2)[0]["lr"][None, :, :40, :40]
    with torch.no_grad():  # the same plain convs with the same tensors: identical outputs
        assert torch.equal(fresh(x), module.net(x))

    # Resuming the deploy-form checkpoint with a training-form network config works (form recorded in the ckpt).
    resumed = fit(
        tiny_net(),
        tmp_path / "resume",
        Reparameterize(at="never"),
        max_steps=4,
        ckpt_path=tmp_path / "ckpt" / "last.ckpt",
    )
    assert network_form(resumed.net) == "deploy"


def test_never_keeps_training_form_and_its_fold_matches(tmp_path):
    export = tmp_path / "deploy.pth"
    module = fit(tiny_net(), tmp_path, Reparameterize(at="never"), max_steps=2)
    assert network_form(module.net) == "train"
    folded = copy.deepcopy(module.net)
    reparameterize_model(folded)
    save_weights(folded, export)
    deploy = tiny_net()
    load_weights(deploy, export)
    x = SampleImages("heldout", scale=2)[1]["lr"][None, :, :33, :47]
    with torch.no_grad():
        torch.testing.assert_close(deploy(x), module.net(x), atol=1e-5, rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="at must be"):
        Reparameterize(at="later")
    with pytest.raises(ValueError, match="unit must be"):
        Reparameterize(at=3, unit="minute")
