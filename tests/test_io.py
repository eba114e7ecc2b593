"""load_image / save_image rules on small PIL-made files and the real Set14 bridge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sr_lightning.data.io import load_image, save_image
from sr_lightning.ops.pixels import to_float


def _rgb(h: int = 5, w: int = 7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _check_rgb(arr: np.ndarray, h: int, w: int) -> None:
    assert arr.dtype == np.uint8 and arr.shape == (h, w, 3) and arr.flags.c_contiguous


def test_rgb_png_round_trip(tmp_path: Path) -> None:
    a = _rgb()
    path = tmp_path / "deep" / "dir" / "a.png"  # parents are created
    save_image(path, a)
    b = load_image(path)
    _check_rgb(b, 5, 7)
    assert np.array_equal(a, b)
    assert load_image(str(path)).shape == (5, 7, 3)  # str paths accepted


def test_gray_l_replicated(tmp_path: Path) -> None:
    g = _rgb()[:, :, 0]
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    b = load_image(tmp_path / "g.png")
    _check_rgb(b, 5, 7)
    for c in range(3):
        assert np.array_equal(b[:, :, c], g)


def test_rgba_and_la_alpha_dropped_not_composited(tmp_path: Path) -> None:
    rgb = _rgb()
    alpha = np.zeros((5, 7, 1), np.uint8)  # fully transparent: compositing would change the colours
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(load_image(tmp_path / "rgba.png"), rgb)
    gray = rgb[:, :, 1]
    Image.fromarray(np.stack([gray, alpha[:, :, 0]], axis=2), "LA").save(tmp_path / "la.png")
    assert Image.open(tmp_path / "la.png").mode == "LA"
    assert np.array_equal(load_image(tmp_path / "la.png"), np.repeat(gray[:, :, None], 3, axis=2))


def test_palette_to_rgb(tmp_path: Path) -> None:
    idx = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    im = Image.fromarray(idx, "P")
    palette = [10, 20, 30, 200, 0, 50, 0, 255, 128]
    im.putpalette(palette + [0] * (768 - len(palette)))
    im.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = load_image(tmp_path / "p.png")
    lut = np.array(palette, np.uint8).reshape(3, 3)
    assert np.array_equal(out, lut[idx])


def test_sixteen_bit_gray_rounded(tmp_path: Path) -> None:
    v = np.array([[0, 128, 129, 257], [385, 386, 65279, 65535]], np.uint16)
    Image.fromarray(v).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = load_image(tmp_path / "g16.png")
    expected = np.array([[0, 0, 1, 1], [1, 2, 254, 255]], np.uint8)  # round(v / 257)
    _check_rgb(out, 2, 4)
    for c in range(3):
        assert np.array_equal(out[:, :, c], expected)


def test_one_bit(tmp_path: Path) -> None:
    bits = np.array([[0, 1, 1], [1, 0, 0]], bool)
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    out = load_image(tmp_path / "b.png")
    assert np.array_equal(out, np.repeat((bits * 255).astype(np.uint8)[:, :, None], 3, axis=2))


def test_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(missing)
    Image.fromarray(np.ones((3, 3), np.float32)).save(tmp_path / "f.tiff")
    with pytest.raises(ValueError, match=r"f\.tiff.*mode F"):
        load_image(tmp_path / "f.tiff")
    with pytest.raises(TypeError):
        save_image(tmp_path / "x.png", np.zeros((3, 3, 3), np.float32))


@pytest.mark.shared
def test_real_bridge_gray_loads_as_three_channels(benchmark_dir: Path) -> None:
    path = benchmark_dir / "Set14" / "HR" / "bridge.png"
    assert Image.open(path).mode == "L"
    out = load_image(path)
    _check_rgb(out, 512, 512)
    assert np.array_equal(out[:, :, 0], np.array(Image.open(path)))
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 0], out[:, :, 2])


def test_save_image_tensors(tmp_path: Path) -> None:
    a = _rgb(4, 6)
    chw = torch.from_numpy(a).permute(2, 0, 1)
    save_image(tmp_path / "f.png", to_float(chw))  # float [0, 1]: rounded back by ops.pixels.to_uint8
    assert np.array_equal(load_image(tmp_path / "f.png"), a)
    save_image(tmp_path / "u.png", chw)  # uint8 tensor: saved as is
    assert np.array_equal(load_image(tmp_path / "u.png"), a)
    # out-of-range floats are clamped
    save_image(tmp_path / "c.png", torch.tensor([-0.5, 2.0]).view(1, 1, 2).repeat(3, 1, 1))
    assert load_image(tmp_path / "c.png")[0].tolist() == [[0, 0, 0], [255, 255, 255]]
    with pytest.raises(ValueError, match="CxHxW"):
        save_image(tmp_path / "b.png", to_float(chw)[None])
    with pytest.raises(TypeError, match="uint8"):
        save_image(tmp_path / "b.png", a.astype(np.float32))
