"""Training pieces that must compose: data streams per rank and epoch, resumable data position, a fold that keeps the
LR schedule, checkpoints of either form, float32 evaluation under autocast, and the EG loss without per-step syncs.
Real photographs from the embedded sample data."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from _lightning_helpers import edbb_net, sample_datamodule
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from sr_lightning.archs.efdn import EFDN
from sr_lightning.archs.forms import network_form, reparameterize_model
from sr_lightning.data.patches import TrainPatches
from sr_lightning.data.sample import SampleImages
from sr_lightning.data.sampler import TrainSampler
from sr_lightning.lightning.callbacks import Reparameterize
from sr_lightning.lightning.module import SRModule
from sr_lightning.losses import EdgeGradientLoss
from sr_lightning.weights import load_weights, save_weights


def patches(repeat: int = 8, files: int | None = None) -> TrainPatches:
    data = SampleImages("train", scale=2)
    if files is not None:
        data = torch.utils.data.Subset(data, range(files))
    return TrainPatches(data, lr_patch_size=16, scale=2, repeat=repeat, seed=7)


def first_batch(ds: TrainPatches, rank: int, world: int, workers: int = 0, epoch: int = 0) -> torch.Tensor:
    sampler = TrainSampler(ds, world, rank, seed=7, batch_size=4)
    sampler.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=workers, drop_last=True)
    return next(iter(loader))["lr"]


def test_ranks_draw_different_crops_of_the_same_image():
    ds = patches(repeat=16, files=1)  # one photograph: two ranks can only differ in crop position and flips
    a, b = first_batch(ds, 0, 2), first_batch(ds, 1, 2)
    assert not any(torch.equal(x, y) for x in a for y in b)
    assert not torch.equal(first_batch(ds, 0, 2, epoch=1), a)  # a new epoch, new crops
    assert torch.equal(first_batch(ds, 0, 2), a)  # reproducible from the seed


def test_patches_do_not_depend_on_the_worker_count():
    ds = patches()
    assert torch.equal(first_batch(ds, 0, 1, workers=0), first_batch(ds, 0, 1, workers=2))


def test_resume_at_skips_consumed_batches():
    ds = patches()
    sampler = TrainSampler(ds, 1, 0, seed=3, batch_size=4)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.resume_at(2, batches=3)
    assert list(sampler) == full[12:]
    assert list(sampler) == full  # the skip happens once
    assert all(e == 2 for e, _ in full)


def test_global_batch_must_split_across_devices():
    dm = sample_datamodule(batch_size=6)
    assert dm.per_device_batch_size(2) == 3
    with pytest.raises(ValueError, match="does not split evenly across 4 processes"):
        dm.per_device_batch_size(4)


def cosine_module(net: nn.Module, t_max: int) -> SRModule:
    return SRModule(
        net,
        nn.L1Loss(),
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-3),
        scheduler=lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=1e-5),
        scale=2,
    )


def test_fold_mid_training_keeps_the_lr_schedule_and_best_checkpoint_loads(tmp_path):
    lrs: dict[int, float] = {}

    class LRSpy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, *args) -> None:
            lrs[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]

    module = cosine_module(edbb_net(), t_max=8)
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val/psnr", mode="max", save_top_k=-1, filename="{step}")
    trainer = L.Trainer(
        max_steps=8,
        logger=False,
        enable_progress_bar=False,
        limit_val_batches=1,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        callbacks=[Reparameterize(at=5), LRSpy(), best],
    )
    trainer.fit(module, datamodule=sample_datamodule(repeat=2))
    expected = {s: 1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * s / 8)) / 2 for s in range(8)}
    assert lrs.keys() == expected.keys()
    for step, lr in lrs.items():  # continuous across the fold at step 5 (not restarted at 1e-3)
        assert lr == pytest.approx(expected[step], rel=1e-12), step
    assert network_form(module.net) == "deploy"
    params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert params == {id(p) for p in module.parameters()}

    # A checkpoint written before the fold (training form) loads into the folded network, and scores the same.
    before = tmp_path / "step=2.ckpt"
    assert torch.load(before, weights_only=True)["sr_form"] == "train"
    reference = cosine_module(edbb_net(), t_max=8)
    reference.load_network_weights(before)  # training form, as saved
    reparameterize_model(reference.net)
    module.load_network_weights(before)  # folded on loading
    x = SampleImages("heldout", scale=2)[0]["lr"][None, :, :40, :40]
    with torch.no_grad():  # the same fold of the same tensors: identical
        assert torch.equal(module.net(x), reference.net(x))
    results = trainer.test(module, datamodule=sample_datamodule(repeat=2), ckpt_path=str(before), verbose=False)
    assert results is not None


def test_evaluation_is_float32_under_autocast():
    module = SRModule(edbb_net(), scale=2)
    lr = SampleImages("heldout", scale=2)[0]["lr"][None, :, :48, :48]
    with torch.no_grad():
        reference = module.super_resolve(lr)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = module.super_resolve(lr)
            raw = module.net(lr)
    assert under_autocast.dtype == torch.float32 and torch.equal(under_autocast, reference)
    assert raw.dtype == torch.bfloat16  # what validation used to score


def test_eg_loss_lambdas_known_without_reading_the_buffer():
    loss = EdgeGradientLoss(lambdas="auto", auto_factor=3e-3)
    assert loss.needs_network
    state = {"lambdas": torch.tensor([1e-3, 2e-3, 0.0])}
    loss.load_state_dict(state)  # e.g. resuming a checkpoint: λ come back, no network needed
    assert not loss.needs_network
    sr, hr = SampleImages("heldout", scale=2)[0]["hr"][None, :, :32, :32].split(1), None
    hr = SampleImages("heldout", scale=2)[1]["hr"][None, :, :32, :32]
    parts = loss.components(sr[0], hr)
    expected = parts["l1"] + 1e-3 * parts["sobel_x"] + 2e-3 * parts["sobel_y"]
    # float32 sum of three non-negative terms: relative rounding of a few ulp
    assert parts["total"].item() == pytest.approx(expected.item(), rel=4 * torch.finfo(torch.float32).eps)
    assert set(parts) == {"l1", "sobel_x", "sobel_y", "laplacian", "total"}


def test_training_form_weights_load_into_a_deploy_form_network(tmp_path):
    """Either form loads into either form: a training-form `model.pth` into the plain (deploy-form) EFDN, folded
    through the model config saved with it; and the deploy file into the training-form network."""
    cfg = {
        "_target_": "sr_lightning.archs.efdn.EFDN",
        "scale": 2,
        "channels": 16,
        "num_blocks": 3,
        "esa_channels": 4,
        "conv3x3": {"_target_": "sr_lightning.archs.edbb.make_edbb", "_partial_": True, "mode": "online"},
    }
    from hydra.utils import instantiate

    torch.manual_seed(1)
    trained = instantiate(cfg)
    save_weights(trained, tmp_path / "model.pth", {"model": cfg, "scale": 2})
    deploy = EFDN(scale=2, channels=16, num_blocks=3, esa_channels=4)  # conv3x3=None: the plain deploy form
    load_weights(deploy, tmp_path / "model.pth")
    reparameterize_model(trained)
    for k, v in trained.state_dict().items():  # the same fold of the same tensors
        assert torch.equal(deploy.state_dict()[k], v), k

    # A file whose config names a foreign _target_ is never built: refused when read, naming the file and the key.
    save_weights(instantiate(cfg), tmp_path / "foreign.pth", {"model": {**cfg, "_target_": "os.system"}})
    with pytest.raises(ValueError, match=r"foreign\.pth: model config key '_target_' = 'os\.system' is not one of"):
        load_weights(EFDN(scale=2, channels=16, num_blocks=3, esa_channels=4), tmp_path / "foreign.pth")
