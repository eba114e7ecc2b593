"""`hardware=auto` (the default): GPUs with mixed precision when present, the CPU in fp32 otherwise.

GPU detection is mocked (torch.cuda.device_count / get_device_capability) for the selection and the composed
config; the Trainer is instantiated for real on this machine; the fp16 GradScaler resume test needs a GPU.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from compose import compose_cfg
from hydra.utils import instantiate
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

from sr_lightning.hardware import auto_accelerator, auto_precision, select_accelerator, select_precision

# (visible GPU capabilities, expected accelerator, expected precision)
MACHINES = {
    "no_gpu": ([], "cpu", "32-true"),
    "one_ampere": ([(8, 0)], "gpu", "bf16-mixed"),
    "two_hopper": ([(9, 0), (9, 0)], "gpu", "bf16-mixed"),
    "one_turing": ([(7, 5)], "gpu", "16-mixed"),
    # the lowest capability decides, so every DDP rank runs the same precision
    "ampere_and_volta": ([(8, 6), (7, 0)], "gpu", "16-mixed"),
}


@pytest.fixture
def machine(monkeypatch):
    """Pretend the visible CUDA devices have the given capabilities."""

    def mock(capabilities: list[tuple[int, int]]) -> None:
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(capabilities))
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capabilities[device or 0])
        # emulated bf16 reports True on pre-Ampere cards: the selection must not rely on it
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    return mock


@pytest.mark.parametrize("name", MACHINES)
def test_selection_from_facts(name):
    capabilities, accelerator, precision = MACHINES[name]
    assert select_accelerator(len(capabilities)) == accelerator
    assert select_precision(accelerator, capabilities) == precision
    assert select_precision("auto", capabilities) == precision
    assert select_precision("cpu", capabilities) == "32-true"  # trainer.accelerator=cpu on a GPU machine


def test_selection_edges():
    assert select_precision("cuda", [(8, 0)]) == "bf16-mixed"
    with pytest.raises(ValueError, match="no CUDA device"):
        select_precision("gpu", [])
    with pytest.raises(ValueError):
        select_accelerator(-1)


@pytest.mark.parametrize("name", MACHINES)
def test_resolvers_read_the_machine(name, machine):
    capabilities, accelerator, precision = MACHINES[name]
    machine(capabilities)
    assert auto_accelerator() == accelerator
    assert auto_precision(auto_accelerator()) == precision


@pytest.mark.parametrize("name", MACHINES)
def test_composed_auto_config(name, machine, tmp_path):
    capabilities, accelerator, precision = MACHINES[name]
    machine(capabilities)
    trainer = compose_cfg("train", ["hardware=auto"], tmp_path).trainer
    assert (trainer.accelerator, trainer.devices, trainer.strategy, trainer.precision) == (
        accelerator,
        1,
        "auto",
        precision,
    )


def test_auto_is_the_default(machine, tmp_path):
    """The issue's command on a two-GPU machine: two GPUs with bf16, not two CPU processes."""
    machine([(8, 0), (8, 0)])
    cfg = compose_cfg("train", ["model=fdiwn", "scale=3", "trainer.devices=2"], tmp_path)
    assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.precision) == ("gpu", 2, "bf16-mixed")
    cfg = compose_cfg("test", ["weights=x.pth"], tmp_path)
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("gpu", "bf16-mixed")
    machine([])
    cfg = compose_cfg("train", ["trainer.devices=2"], tmp_path)
    assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.precision) == ("cpu", 2, "32-true")


@pytest.mark.parametrize(
    ("option", "accelerator", "precision"),
    [("cpu", "cpu", "32-true"), ("ddp_cpu", "cpu", "32-true"), ("gpu", "gpu", "16-mixed"), ("ddp", "gpu", "16-mixed")],
)
def test_explicit_options_ignore_the_machine(option, accelerator, precision, machine, tmp_path):
    machine([(9, 0)])
    trainer = compose_cfg("train", [f"hardware={option}"], tmp_path).trainer
    assert (trainer.accelerator, trainer.precision) == (accelerator, precision)


def test_accelerator_override_sets_precision(machine, tmp_path):
    machine([(8, 0)])
    trainer = compose_cfg("train", ["trainer.accelerator=cpu"], tmp_path).trainer
    assert trainer.precision == "32-true"  # the precision follows the accelerator actually used


@pytest.mark.parametrize("devices", [1, 2])
def test_trainer_from_auto_config(devices, tmp_path):
    """Real detection on this machine; trainer.devices=2 is DDP (Lightning's strategy "auto", subprocess launcher)."""
    num_gpus = torch.cuda.device_count()
    if 0 < num_gpus < devices:
        pytest.skip(f"{devices} devices asked, {num_gpus} GPU visible")
    cfg = compose_cfg("train", ["hardware=auto", f"trainer.devices={devices}"], tmp_path)
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer.accelerator, CUDAAccelerator if num_gpus else CPUAccelerator)
    assert trainer.num_devices == devices
    if devices == 1:
        assert isinstance(trainer.strategy, SingleDeviceStrategy)
    else:
        assert type(trainer.strategy) is DDPStrategy and trainer.strategy._start_method == "popen"
    if not num_gpus:
        assert trainer.precision == "32-true"
    else:
        low = min(torch.cuda.get_device_capability(i) for i in range(num_gpus))
        assert trainer.precision == ("bf16-mixed" if low >= (8, 0) else "16-mixed")


class _ScalerAtStart(L.Callback):
    """Records the GradScaler state when training starts (after Lightning restored the checkpoint)."""

    def __init__(self) -> None:
        self.state: tuple[float, int] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        scaler = trainer.precision_plugin.scaler
        self.state = (scaler.get_scale(), scaler._get_growth_tracker())


def _fit_fp16(tmp_path, max_steps: int, ckpt_path=None, callbacks=()) -> L.Trainer:
    overrides = [
        "hardware=auto",
        "trainer.precision=16-mixed",  # fp16 + GradScaler even where auto would pick bf16
        "model=efdn",
        "scale=2",
        f"trainer.max_steps={max_steps}",
        "stage.batch_size=2",
        "stage.lr_patch_size=16",
        "data.num_workers=0",
        "test=false",
    ]
    cfg = compose_cfg("train", overrides, tmp_path)
    torch.manual_seed(0)
    trainer = instantiate(
        cfg.trainer,
        logger=False,
        callbacks=list(callbacks),
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(instantiate(cfg.module), datamodule=instantiate(cfg.data), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fp16 GradScaler runs on a CUDA device only")
def test_fp16_scaler_state_survives_resume(tmp_path):
    trainer = _fit_fp16(tmp_path / "first", max_steps=3)
    plugin = trainer.precision_plugin
    assert isinstance(plugin, MixedPrecision) and plugin.scaler is not None
    end = (plugin.scaler.get_scale(), plugin.scaler._get_growth_tracker())
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)

    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["MixedPrecision"]  # the plugin's state_dict
    assert (saved["scale"], saved["_growth_tracker"]) == end
    # 3 steps move the state off a fresh scaler's (65536, 0): the tracker counts finite steps, an inf halves the
    # scale; so a resume that ignored the checkpoint would be seen below.
    fresh = torch.amp.GradScaler("cuda")
    assert end != (fresh.get_scale(), fresh._get_growth_tracker())

    spy = _ScalerAtStart()
    resumed = _fit_fp16(tmp_path / "resumed", max_steps=4, ckpt_path=str(ckpt), callbacks=[spy])
    assert spy.state == end
    assert resumed.global_step == 4
