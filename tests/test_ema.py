"""EMA of the weights: the warm-up recursion, Lightning's handling of the average (validation, checkpoints, end of
training, test loop), folds of the averaged copy, exact resume and DDP. Real photographs from the embedded sample data.
"""

from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from _lightning_helpers import edbb_net, quiet_trainer, sample_datamodule
from compose import compose_cfg
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.optim.swa_utils import AveragedModel

from sr_lightning.archs.forms import network_form, reparameterize_model
from sr_lightning.data.sample import SampleImages
from sr_lightning.lightning.callbacks import EMA, Reparameterize
from sr_lightning.lightning.callbacks.ema import ema_decay, ema_multi_avg_fn
from sr_lightning.lightning.module import SRModule
from sr_lightning.metrics import PSNRY, SSIMY
from sr_lightning.utils.instantiate import instantiate_dict

U32 = 2.0**-24  # unit roundoff of float32


def sr_module(net: nn.Module) -> SRModule:
    return SRModule(net, nn.L1Loss(), optimizer=lambda params: torch.optim.Adam(params, lr=2e-3), scale=2)


def trainer(root: Path, callbacks: list, max_steps: int, val_every: int | None = 2) -> L.Trainer:
    return quiet_trainer(root, callbacks, max_steps, val_every, limit_val_batches=0 if val_every is None else 1.0)


def net_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's entries of a LightningModule state dict, without the ``net.`` prefix."""
    return {k[4:]: v for k, v in state_dict.items() if k.startswith("net.")}


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@torch.no_grad()
def score(net: nn.Module, state: dict[str, torch.Tensor]) -> tuple[float, float]:
    """Y-PSNR / SSIM of ``net`` with the network weights ``state`` on the held-out photographs."""
    net = copy.deepcopy(net)
    net.load_state_dict(state)
    psnr, ssim = PSNRY(shave=2), SSIMY(shave=2)
    for item in SampleImages("heldout", scale=2):
        sr = net(item["lr"][None])
        psnr.update(sr, item["hr"][None])
        ssim.update(sr, item["hr"][None])
    return float(psnr.compute()), float(ssim.compute())


# -- the decay and its warm-up -------------------------------------------------------------------------------------
def test_decay_warmup_schedule():
    assert ema_decay(0, 0.999) == 0.0  # the first update copies the weights
    assert ema_decay(1, 0.999) == pytest.approx(1 - 2**-0.75)
    assert ema_decay(100, 0.999) == pytest.approx(1 - 101**-0.75)
    values = [ema_decay(n, 0.999) for n in range(0, 20000, 50)]
    assert values == sorted(values) and values[-1] == 0.999
    assert ema_decay(9_000, 0.999) < 0.999 <= ema_decay(10_000, 0.999)  # 1 - 10000^-0.75 = 0.999
    assert ema_decay(0, 0.9, warmup=False) == ema_decay(5, 0.9, warmup=False) == 0.9
    with pytest.raises(ValueError):
        ema_multi_avg_fn(1.5)


@pytest.mark.parametrize("warmup", [True, False])
def test_average_follows_the_ema_recursion(warmup):
    """AveragedModel with our multi_avg_fn gives e_0 = w_0, e_n = d_n e_(n-1) + (1 - d_n) w_n (float64 reference)."""
    torch.manual_seed(1)
    layer = nn.Conv2d(3, 4, 3)
    avg = AveragedModel(layer, multi_avg_fn=ema_multi_avg_fn(0.9, warmup), use_buffers=True)
    steps = 30
    ref, peak = None, 0.0
    for n in range(steps):
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn_like(p))
        avg.update_parameters(layer)
        w = [p.detach().double() for p in layer.parameters()]
        peak = max([peak] + [float(x.abs().max()) for x in w])
        d = ema_decay(n, 0.9, warmup)
        ref = w if ref is None else [d * e + (1 - d) * x for e, x in zip(ref, w)]
    assert int(avg.n_averaged) == steps
    for got, want in zip(avg.module.parameters(), ref):
        # One float32 lerp per update: x - e, the float32 weight, the product and the sum, each rounded, on values
        # up to |x - e| <= 2 max|w| (<= 6 roundings of 2 max|w|); a convex combination never amplifies earlier errors.
        torch.testing.assert_close(got.double(), want, rtol=0, atol=steps * 6 * U32 * 2 * peak)


# -- Lightning's handling of the average ---------------------------------------------------------------------------
def test_validation_checkpoints_and_test_loop_use_the_average(tmp_path):
    ema = EMA(decay=0.999, validate_raw=True)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    module = sr_module(edbb_net())
    t = trainer(tmp_path, [ema, ckpt], max_steps=4)
    t.fit(module, datamodule=sample_datamodule())
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)  # written after the step-4 validation

    # The checkpoint: the average as state_dict, the raw weights beside it, the update count.
    average = net_state({k[len("module.") :]: v for k, v in ema._average_model.state_dict().items()})
    assert_same_tensors(net_state(last["state_dict"]), average)
    raw = net_state(last["current_model_state"])
    assert any(not torch.equal(raw[k], average[k]) for k in raw)
    assert int(last["averaging_state"]["n_averaged"]) == 4 and last["callbacks"]["EMA"]["latest_update_step"] == 4
    # After fitting the module holds the average.
    assert_same_tensors(module.net.state_dict(), average)

    # Validation scored the average (val/*) and the raw weights (val_raw/*), on every held-out image.
    metrics = t.callback_metrics
    ema_scores, raw_scores = score(edbb_net(), average), score(edbb_net(), raw)
    assert ema_scores != raw_scores
    for key, want in zip(("val/psnr", "val/ssim", "val_raw/psnr", "val_raw/ssim"), ema_scores + raw_scores):
        assert float(metrics[key]) == pytest.approx(want, rel=4 * U32), key  # logged through float32 at most

    # The test loop on the checkpoint evaluates its state_dict (the average), not the raw weights.
    t.test(module, datamodule=sample_datamodule(test=True), ckpt_path=tmp_path / "ckpt" / "last.ckpt", verbose=False)
    assert_same_tensors(module.net.state_dict(), average)
    assert module.test_results["sample"]["psnr"] == pytest.approx(ema_scores[0], rel=1e-12)


def test_raw_scoring_is_float32_without_autocast(tmp_path):
    """score_raw under an active bf16 autocast gives the float32 scores."""
    ema = EMA()
    module = sr_module(edbb_net())
    t = trainer(tmp_path, [ema], max_steps=1, val_every=None)
    t.fit(module, datamodule=sample_datamodule())
    t.limit_val_batches = 1.0
    t.validate(module, datamodule=sample_datamodule(), verbose=False)  # sets up the validation loaders
    with torch.autocast("cpu", dtype=torch.bfloat16):
        psnr, ssim = ema.score_raw(t, module)
    assert (float(psnr), float(ssim)) == score(edbb_net(), module.net.state_dict())


# -- folds ---------------------------------------------------------------------------------------------------------
def test_on_reparameterize_folds_the_average():
    """Folding the training-form average gives the deploy-form average; updates then pair with the folded net."""
    module = sr_module(edbb_net())
    ema = EMA(decay=0.9)
    ema.setup(None, module, "fit")  # type: ignore[arg-type]
    torch.manual_seed(2)
    for _ in range(3):  # an average different from the current weights
        with torch.no_grad():
            for p in module.net.parameters():
                p.add_(0.1 * torch.randn_like(p))
        ema._average_model.update_parameters(module)
    expected = copy.deepcopy(ema._average_model.module.net)
    reparameterize_model(expected)

    reparameterize_model(module.net)
    ema.on_reparameterize(None, module)  # type: ignore[arg-type]
    folded = ema._average_model.module.net
    assert network_form(folded) == "deploy"
    assert_same_tensors(folded.state_dict(), expected.state_dict())
    x = SampleImages("heldout", scale=2)[0]["lr"][None, :, :40, :40]
    with torch.no_grad():
        assert torch.equal(folded(x), expected(x))
    ema._average_model.update_parameters(module)  # pairs parameter by parameter with the folded module
    assert int(ema._average_model.n_averaged) == 4


@pytest.mark.parametrize("ema_first", [True, False])
def test_fold_mid_training_folds_the_average(tmp_path, ema_first):
    ema = EMA(decay=0.9)
    snapshots: dict[str, nn.Module] = {}

    class Spy(L.Callback):  # listed after both: sees the average after the EMA update and after the fold
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            if trainer.global_step == 2:
                snapshots["before"] = copy.deepcopy(ema._average_model.module.net)

        def on_train_batch_start(self, trainer, pl_module, *args) -> None:
            if trainer.global_step == 2:
                snapshots["after"] = copy.deepcopy(ema._average_model.module.net)

    fold = Reparameterize(at=2, unit="step")
    module = sr_module(edbb_net())
    callbacks = [ema, fold, Spy()] if ema_first else [fold, ema, Spy()]
    trainer(tmp_path, callbacks, max_steps=4, val_every=None).fit(module, datamodule=sample_datamodule())

    assert network_form(snapshots["before"]) == "train" and network_form(snapshots["after"]) == "deploy"
    reparameterize_model(snapshots["before"])
    assert_same_tensors(snapshots["after"].state_dict(), snapshots["before"].state_dict())
    assert network_form(module.net) == "deploy" and int(ema._average_model.n_averaged) == 4
    assert ema._average_model.module.net.state_dict().keys() == module.net.state_dict().keys()


@pytest.mark.parametrize("ema_first", [True, False])
def test_fold_at_fit_start_in_either_callback_order(tmp_path, ema_first):
    ema = EMA(decay=0.9)
    fold = Reparameterize(at="fit_start")
    module = sr_module(edbb_net())
    trainer(tmp_path, [ema, fold] if ema_first else [fold, ema], max_steps=2).fit(
        module, datamodule=sample_datamodule()
    )
    assert network_form(ema._average_model.module.net) == "deploy"
    assert_same_tensors(ema._average_model.module.net.state_dict(), module.net.state_dict())  # copied at the end


# -- resume --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["train", "deploy"])
def test_resume_ends_with_the_uninterrupted_average(tmp_path, form):
    """N steps in one go == k steps, then a fresh process-like run resumed from the step-k checkpoint to N.

    `deploy`: the checkpoint holds a folded network while the resumed run is built in training form; the module
    folds itself on load and the EMA must fold its average before loading the averaging state.
    """
    total, k = 6, 3

    def net(built: str) -> nn.Module:
        n = edbb_net()
        if built == "deploy":
            reparameterize_model(n)
        return n

    def run(root: Path, built: str, max_steps: int, ckpt_path: Path | None = None) -> tuple[EMA, SRModule]:
        ema = EMA(decay=0.999)
        ckpt = ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=k, save_top_k=-1)
        module = sr_module(net(built))
        trainer(root, [ema, ckpt], max_steps=max_steps, val_every=None).fit(
            module, datamodule=sample_datamodule(), ckpt_path=ckpt_path
        )
        return ema, module

    whole, _ = run(tmp_path / "whole", form, total)
    run(tmp_path / "first", form, k)
    resumed, module = run(tmp_path / "resumed", "train", total, ckpt_path=tmp_path / "first" / f"step={k}.ckpt")
    assert network_form(module.net) == form
    assert int(resumed._average_model.n_averaged) == int(whole._average_model.n_averaged) == total
    # The same float32 operations in the same order (restored weights, moments, average, count and data position):
    # equal to the last bit.
    assert_same_tensors(resumed._average_model.module.state_dict(), whole._average_model.module.state_dict())


# -- config --------------------------------------------------------------------------------------------------------
def test_config_node_is_off_by_default(tmp_path):
    def emas(overrides: list[str]) -> list[EMA]:
        cfg = compose_cfg("train", overrides, tmp_path)
        return [cb for cb in instantiate_dict(cfg.callbacks) if isinstance(cb, EMA)]

    assert emas([]) == []
    (ema,) = emas(["callbacks.ema.enabled=true", "callbacks.ema.validate_raw=true"])
    assert (ema.decay, ema.warmup, ema.validate_raw) == (0.999, True, True)
    (ema,) = emas(["callbacks=reparam", "callbacks.ema.enabled=true", "callbacks.ema.decay=0.99"])
    assert ema.decay == 0.99


# -- DDP -----------------------------------------------------------------------------------------------------------
DDP_SCRIPT = """
import json, sys
from pathlib import Path
import lightning as L, torch
sys.path.insert(0, {tests!r})
from _lightning_helpers import edbb_net, sample_datamodule
from test_ema import EMA, ModelCheckpoint, sr_module

out = Path({out!r})
ema = EMA(decay=0.999, validate_raw=True)
module = sr_module(edbb_net())
t = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=4, logger=False, enable_progress_bar=False,
              enable_model_summary=False, num_sanity_val_steps=0, val_check_interval=4, check_val_every_n_epoch=None,
              default_root_dir=out, callbacks=[ema, ModelCheckpoint(dirpath=out / "ckpt", save_last=True)])
dm = sample_datamodule()
dm.batch_size = 4  # the global batch: 2 per process
t.fit(module, datamodule=dm)
r = t.global_rank
torch.save(ema._average_model.module.state_dict(), out / f"average{{r}}.pt")
(out / f"metrics{{r}}.json").write_text(json.dumps({{k: float(v) for k, v in t.callback_metrics.items()}}))
"""


@pytest.mark.slow
def test_ddp_ranks_hold_the_same_average_and_raw_scores_sync(tmp_path):
    script = tmp_path / "ddp_ema.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-5000:]
    a0, a1 = (torch.load(tmp_path / f"average{r}.pt", weights_only=True) for r in (0, 1))
    assert_same_tensors(a0, a1)
    m0, m1 = (json.loads((tmp_path / f"metrics{r}.json").read_text()) for r in (0, 1))
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    # The three held-out images are split 2 + 1 over the ranks; the synced means are the means over all three, the
    # same on both ranks (train/loss is per rank).
    ema_scores = score(edbb_net(), net_state(last["state_dict"]))
    raw_scores = score(edbb_net(), net_state(last["current_model_state"]))
    assert ema_scores != raw_scores
    for key, want in zip(("val/psnr", "val/ssim", "val_raw/psnr", "val_raw/ssim"), ema_scores + raw_scores):
        assert m0[key] == m1[key] == pytest.approx(want, rel=4 * U32), key


# -- the train entry point -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_entry_point_logs_raw_scores_and_exports_the_average(tmp_path):
    run_dir = tmp_path / "run"
    overrides = [
        "scale=2",
        "trainer.max_steps=4",
        "stage.val_every_n_steps=2",
        "stage.batch_size=2",
        "stage.lr_patch_size=16",
        "data.num_workers=0",
        "test=false",
        "callbacks.ema.enabled=true",
        "callbacks.ema.validate_raw=true",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "sr_lightning.train", *overrides], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    rows = [r for r in csv.DictReader((run_dir / "csv" / "version_0" / "metrics.csv").open()) if r.get("val/psnr")]
    assert len(rows) == 2 and all(float(r["val_raw/psnr"]) > 0 and float(r["val_raw/ssim"]) > 0 for r in rows)
    (best,) = (run_dir / "checkpoints").glob("best-*.ckpt")
    ckpt = torch.load(best, weights_only=False)
    exported = torch.load(run_dir / "weights" / "model.pth", weights_only=True)["state_dict"]
    assert_same_tensors(exported, net_state(ckpt["state_dict"]))  # the average ...
    raw = net_state(ckpt["current_model_state"])
    assert any(not torch.equal(raw[k], exported[k]) for k in raw)  # ... not the raw weights
