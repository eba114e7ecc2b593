"""The `upscale` fast path (issue 21): lossless PNG at the fast zlib level, inputs in the network's memory format,
one set-up per run, and encoding that stays out of the network's way on the CPU (and beside it on a GPU)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sr_lightning.inference import pipeline
from sr_lightning.inference.images import PNG_OPTIONS, write_picture
from sr_lightning.inference.plan import Job
from sr_lightning.inference.runner import Runner, input_memory_format
from sr_lightning.inference.upscaler import upscale_image


def _pixels(shape: tuple[int, ...], dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    high = 65536 if dtype == np.uint16 else 256
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


@pytest.mark.parametrize(
    "array",
    [_pixels((37, 53, 3)), _pixels((37, 53, 4)), _pixels((37, 53)), _pixels((37, 53, 2)), _pixels((37, 53), np.uint16)],
    ids=["rgb", "rgba", "gray", "gray+alpha", "gray16"],
)
def test_png_outputs_read_back_exactly(array, tmp_path):
    """PNG is lossless whatever the zlib settings: what `write_picture` writes with `PNG_OPTIONS` decodes to the
    array it was given, as Pillow's defaults would."""
    path = tmp_path / "out.png"
    assert write_picture(path, array, "PNG") == []
    with Image.open(path) as im:
        back = np.asarray(im)
    expected, default = tmp_path / "expected.png", tmp_path / "default.png"
    Image.fromarray(array).save(expected, **PNG_OPTIONS)
    Image.fromarray(array).save(default)
    assert path.read_bytes() == expected.read_bytes() != default.read_bytes()  # the options reached the encoder
    assert back.dtype == array.dtype or array.dtype == np.uint16  # 16-bit gray reads back as mode I;16
    np.testing.assert_array_equal(back.astype(array.dtype), array)


def _net(channels_last: bool) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3 * 4, 3, padding=1), nn.PixelShuffle(2))
    net.scale = 2  # type: ignore[assignment]
    return net.to(memory_format=torch.channels_last) if channels_last else net


@pytest.mark.parametrize("channels_last", [False, True])
def test_runner_feeds_the_networks_memory_format(channels_last):
    """A network that comes in channels_last (as `load_model` may give it) gets NHWC inputs, an NCHW one NCHW
    inputs; the values are the same either way (float32 summation order: a few ulp)."""
    net = _net(channels_last)
    seen: list[bool] = []
    net.register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    runner = Runner(net, device="cpu")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert runner.memory_format == input_memory_format(net) == fmt
    x = torch.rand(1, 3, 9, 11)
    out = runner(x)
    assert seen == [channels_last]
    with torch.no_grad():
        reference = _net(False)(x)
    assert (out - reference).abs().max().item() <= 1e-5  # 8*9 + 3*9 products of O(1) terms, float32


def test_runner_follows_a_declared_memory_format():
    net = _net(False)
    net.sr_memory_format = torch.channels_last  # type: ignore[assignment]
    assert Runner(net, device="cpu").memory_format == torch.channels_last


def test_one_set_up_per_run(tmp_path, monkeypatch):
    """Several images: the weights are read and the network set up once (no per-image re-detection or
    re-compilation), and the memory format is chosen once."""
    from compose import compose_cfg

    from sr_lightning import upscale
    from sr_lightning.archs.fsrcnn import FSRCNN
    from sr_lightning.inference.loading import load_model
    from sr_lightning.weights import save_weights

    options = {"feature_channels": 8, "shrink_channels": 4, "mapping_layers": 1, "conv3x3": None}
    meta = {"model": {"_target_": "sr_lightning.archs.fsrcnn.FSRCNN", **options}, "scale": 2}
    torch.manual_seed(0)
    weights = save_weights(FSRCNN(scale=2, **options), tmp_path / "fsrcnn_x2.pth", meta)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        Image.fromarray(_pixels((12, 14, 3), seed=i)).save(photos / f"{i}.png")
    calls = {"load_model": 0, "runner": 0, "formats": 0}

    def counted_load(*args: object, **kwargs: object) -> object:
        calls["load_model"] += 1
        return load_model(*args, **kwargs)  # type: ignore[arg-type]

    def counted_format(module: nn.Module) -> torch.memory_format:
        calls["formats"] += 1
        return input_memory_format(module)

    init = Runner.__init__

    def counted_init(self: Runner, *args: object, **kwargs: object) -> None:
        calls["runner"] += 1
        init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(upscale, "load_model", counted_load)
    monkeypatch.setattr("sr_lightning.inference.runner.input_memory_format", counted_format)
    monkeypatch.setattr(Runner, "__init__", counted_init)
    cfg = compose_cfg(
        "upscale", [f"weights={weights}", f"input={photos}", f"output={tmp_path / 'out'}"], tmp_path / "r"
    )
    summary = upscale.run(cfg)
    assert summary["counts"] == {"ok": 5}
    assert calls == {"load_model": 1, "runner": 1, "formats": 1}


def _scheduled(
    device_type: str, tmp_path: Path, images: int = 6, io_threads: int = 2
) -> list[tuple[str, float, float]]:
    """(what, start, end) of every network call and encode of a `run_pipeline` over `images` inputs, with a stand-in
    network (10 ms) and encoder (30 ms) on a runner whose device is `device_type`."""
    events: list[tuple[str, float, float]] = []
    lock = threading.Lock()

    def network(_runner: object, image: np.ndarray, **_options: object) -> np.ndarray:
        start = time.perf_counter()
        time.sleep(0.01)
        with lock:
            events.append(("network", start, time.perf_counter()))
        return np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)

    def encode(*args: object) -> list[str]:
        start = time.perf_counter()
        time.sleep(0.03)
        with lock:
            events.append(("encode", start, time.perf_counter()))
        return []

    jobs = []
    for i in range(images):
        source = tmp_path / f"{i}.png"
        Image.fromarray(_pixels((6, 7, 3), seed=i)).save(source)
        jobs.append(Job(source, Path(source.name), {"input": str(source)}, "PNG", tmp_path / f"out{i}.png"))
    runner = SimpleNamespace(scale=2, device=SimpleNamespace(type=device_type))
    mp = pytest.MonkeyPatch()
    mp.setattr(pipeline, "upscale_image", network)
    mp.setattr(pipeline, "write_picture", encode)
    try:
        pipeline.run_pipeline(jobs, runner, pipeline.Settings(io_threads=io_threads))
    finally:
        mp.undo()
    assert all(job.record["status"] == "ok" for job in jobs)
    return events


def _overlaps(events: list[tuple[str, float, float]]) -> int:
    nets = [(s, e) for what, s, e in events if what == "network"]
    encodes = [(s, e) for what, s, e in events if what == "encode"]
    return sum(1 for s, e in nets for s2, e2 in encodes if s < e2 and s2 < e)


def test_on_the_cpu_encoding_waits_for_the_network_in_batches(tmp_path):
    """On the CPU the network and the encoders would share the cores: no network call runs while an output is
    encoded; outputs go to the encoders 2 x io_threads at a time."""
    events = _scheduled("cpu", tmp_path)
    assert _overlaps(events) == 0
    first_encode = min(s for what, s, _ in events if what == "encode")
    assert sum(1 for what, _, e in events if what == "network" and e <= first_encode) == 4  # 2 x io_threads
    assert sum(1 for what, *_ in events if what == "encode") == 6


def test_on_a_gpu_encoding_runs_beside_the_network(tmp_path):
    events = _scheduled("cuda", tmp_path)
    assert _overlaps(events) > 0


def test_upscale_image_returns_contiguous_arrays():
    """The result is C-contiguous in the caller's layout, so an image writer takes it without another copy."""
    net = _net(True)
    for image in (_pixels((9, 11, 3)), _pixels((9, 11)), _pixels((9, 11, 4)), _pixels((9, 11), np.uint16)):
        out = upscale_image(net, image)
        assert out.flags.c_contiguous
        assert out.shape[:2] == (18, 22) and out.dtype == image.dtype
