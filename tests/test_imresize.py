"""MATLAB-bicubic imresize: bit-exact vs the official Set5/Set14 LR files; shape, batch and layout rules."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _tolerance import assert_within, gamma
from PIL import Image

from sr_lightning.data.io import load_image
from sr_lightning.data.sample import sample_files
from sr_lightning.ops.imresize import _imresize_dense, _taps, _weight_matrix, bicubic_upscale, imresize, modcrop
from sr_lightning.ops.pixels import to_float

SCALES = (2, 3, 4)


def imresize_np(img: np.ndarray, scale: float) -> np.ndarray:
    """``imresize`` for a numpy image HxW or HxWxC, as the official files store them."""
    t = torch.from_numpy(np.ascontiguousarray(img))
    if img.ndim == 3:
        return np.ascontiguousarray(imresize(t.permute(2, 0, 1), scale=scale).permute(1, 2, 0).numpy())
    return imresize(t, scale=scale).numpy()


def _pairs(benchmark_dir: Path) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """(name, scale, HR array, LR array) for Set5+Set14, each file read in its own PIL mode."""
    out = []
    for set_name in ("Set5", "Set14"):
        for hr_path in sorted((benchmark_dir / set_name / "HR").glob("*.png")):
            hr_img = Image.open(hr_path)
            hr = np.array(hr_img)
            for s in SCALES:
                lr_img = Image.open(benchmark_dir / set_name / "LR_bicubic" / f"X{s}" / f"{hr_path.stem}x{s}.png")
                assert lr_img.mode == hr_img.mode, (hr_path, hr_img.mode, lr_img.mode)
                out.append((f"{set_name}/{hr_path.stem}", s, hr, np.array(lr_img)))
    return out


@pytest.fixture(scope="module")
def pairs(benchmark_dir: Path) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    p = _pairs(benchmark_dir)
    assert len(p) == 19 * len(SCALES)
    return p


@pytest.mark.shared
def test_matches_official_lr_bit_exact(pairs) -> None:
    total = same = 0
    bad = []
    for name, s, hr, lr in pairs:
        out = imresize_np(modcrop(hr, s), 1 / s)
        assert out.shape == lr.shape and out.dtype == np.uint8, (name, s, out.shape, lr.shape)
        eq = int((out == lr).sum())
        total += lr.size
        same += eq
        if eq != lr.size:
            bad.append((name, s, lr.size - eq))
    rate = same / total
    print(f"imresize vs official LR: {same}/{total} values equal ({100 * rate:.4f}%)")
    assert not bad, f"mismatching images: {bad}"
    assert rate == 1.0


@pytest.mark.shared
def test_bridge_is_gray_and_exact(pairs) -> None:
    name, s, hr, lr = next(p for p in pairs if p[0] == "Set14/bridge" and p[1] == 3)
    assert hr.ndim == 2 and lr.ndim == 2
    out = imresize(torch.from_numpy(modcrop(hr, s)), scale=1 / s)
    assert torch.equal(out, torch.from_numpy(lr))


@pytest.mark.shared
def test_symmetric_padding_does_not_match_official(pairs) -> None:
    # The official LR files use edge replication; MATLAB's mirrored padding differs at the borders only.
    name, s, hr, lr = next(p for p in pairs if p[0] == "Set5/baby" and p[1] == 4)
    chw = torch.from_numpy(modcrop(hr, s)).permute(2, 0, 1)
    sym = imresize(chw, scale=1 / s, padding="symmetric").permute(1, 2, 0).numpy()
    diff = (sym != lr).any(axis=2)
    assert diff.any()
    assert not diff[2:-2, 2:-2].any()


def _rand_u8(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


def _matrices(h: int, w: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The float64 (out, in) resampling matrices of the height and width passes for one scale (height first)."""
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    return (
        _weight_matrix(h, oh, scale, True, "replicate", torch.float64, torch.device("cpu")),
        _weight_matrix(w, ow, scale, True, "replicate", torch.float64, torch.device("cpu")),
    )


def _abs_path(x: torch.Tensor, scale: float) -> tuple[torch.Tensor, int]:
    """(|W_h| |x| |W_w|^T, taps): per output the sum of |terms| of the two passes, and the number of nonzero taps
    along the chain (a tap of weight 0 adds an exact 0: no rounding)."""
    mh, mw = _matrices(x.shape[-2], x.shape[-1], scale)
    taps = int((mh != 0).sum(1).max() + (mw != 0).sum(1).max())
    return mh.abs() @ x.double().abs() @ mw.abs().T, taps


def test_float_path_agrees_with_uint8_within_rounding() -> None:
    x = _rand_u8(3, 61, 47)
    for s in SCALES:
        u8 = imresize(x, scale=1 / s).double()
        f64 = imresize(x.double(), scale=1 / s)
        f32 = imresize(x.float() / 255, scale=1 / s).double() * 255
        assert f64.dtype == torch.float64
        # uint8 rounds (and saturates) the height pass: e1 = rounded - exact; the width pass carries |W_w| |e1|,
        # the final rounding adds 0.5 (the clamps are 1-Lipschitz). float64 rounding: gamma(taps) |terms|.
        mh, mw = _matrices(61, 47, 1 / s)
        first = mh @ x.double()
        e1 = (first + 0.5).floor().clamp(0, 255) - first
        abs_terms, taps = _abs_path(x, 1 / s)
        bound = 0.5 + e1.abs() @ mw.abs().T + 2 * gamma(taps + 2, torch.float64) * abs_terms
        assert_within(u8, f64.clamp(0, 255), bound, f"uint8 x1/{s}")
        # float32 path: x / 255 and the float32-rounded weights (one rounding each), two dot products, against the
        # float64 path: gamma(taps + 4) of float32 (+ the same in float64) times the sum of |terms|.
        bound32 = (gamma(taps + 4) + gamma(taps + 4, torch.float64)) * abs_terms
        assert_within(f32, f64, bound32, f"float32 x1/{s}")
        # and most values agree after a single final rounding
        assert (torch.floor(f64 + 0.5).clamp(0, 255) == u8).float().mean() > 0.5


@pytest.mark.parametrize("padding", ["replicate", "symmetric"])
def test_taps_are_the_dense_band(padding) -> None:
    # Tiny inputs merge many taps into one pixel (replicate: runs at the edge; symmetric: mirrored, not adjacent).
    for n in (1, 2, 3, 5, 8, 17, 40):
        for s in (1 / 4, 1 / 3, 1 / 2, 0.37, 1.7, 2.0, 3.0, 4.0):
            out = math.ceil(n * s)
            mat = _weight_matrix(n, out, s, True, padding, torch.float64, torch.device("cpu"))
            idx, w = _taps(n, out, s, True, padding)
            assert idx.shape[1] <= math.ceil(4 / min(s, 1)) + 2  # the kernel's taps, not the input width
            assert torch.equal(w, mat.gather(1, idx) * (w != 0))  # bit-equal merged weights, zeros only as padding
            assert torch.equal((w != 0).sum(1), (mat != 0).sum(1))  # every nonzero of the matrix is in the band
            assert bool((idx[:, 1:] >= idx[:, :-1]).all())  # increasing columns: the summation order of the band


def _ramps() -> list[torch.Tensor]:
    """uint8 ramps (2-D, slopes 1-4): on a ramp the Keys cubic lands exactly halfway between integers for x1/2 and
    x1/4 (u = 2x - 1/2, 4x - 3/2) and for x2 / x4 with slopes 2 / 4, so the uint8 rounding meets exact .5 ties."""
    i, j = torch.meshgrid(torch.arange(48), torch.arange(52), indexing="ij")
    return [(a * i + b * j).clamp(max=255).to(torch.uint8)[None] for a, b in ((1, 1), (1, 3), (2, 2), (4, 0))]


def test_gather_equals_dense_reference_uint8() -> None:
    inputs = [_rand_u8(2, 3, 29, 37, seed=5), _rand_u8(1, 1, 5, 3, seed=6), *_ramps()]
    ties = 0
    for x in inputs:
        for s in (1 / 2, 1 / 3, 1 / 4, 0.45, 2.0, 3.0, 4.0):
            for padding in ("replicate", "symmetric"):
                new, ref = imresize(x, scale=s, padding=padding), _imresize_dense(x, scale=s, padding=padding)
                assert torch.equal(new, ref), (tuple(x.shape), s, padding, int((new != ref).sum()))
        first = _imresize_dense(x.double(), out_size=(math.ceil(x.shape[-2] / 2), x.shape[-1]))
        ties += int((first - first.floor() == 0.5).sum())
    assert imresize(inputs[0], out_size=(11, 80)).equal(_imresize_dense(inputs[0], out_size=(11, 80)))
    assert ties > 1000  # the ramps do exercise the .5 ties


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gather_equals_dense_reference_float(dtype) -> None:
    for x in (_rand_u8(2, 31, 26, seed=7).to(dtype) / 255, _ramps()[1].to(dtype)):
        for s in (1 / 2, 1 / 3, 1 / 4, 3.0):
            new, ref = imresize(x, scale=s), _imresize_dense(x, scale=s)
            assert new.dtype == dtype and new.is_contiguous()
            # the same two chained dot products with the same rounded weights, summed in other orders (matmul vs
            # tap by tap): <= 2 gamma(taps of both passes) times the sum of |terms| (tests/_tolerance.py)
            abs_terms, taps = _abs_path(x, s)
            assert_within(new.double(), ref.double(), 2 * gamma(taps, dtype) * abs_terms, f"{dtype} x{s}")


@pytest.mark.parametrize(
    ("hw", "scale", "expected"),
    [((7, 10), 1 / 3, (3, 4)), ((5, 5), 0.5, (3, 3)), ((249, 360), 1 / 3, (83, 120)), ((9, 4), 2, (18, 8))],
)
def test_output_size_is_ceil(hw, scale, expected) -> None:
    out = imresize(torch.rand(2, *hw), scale=scale)
    assert tuple(out.shape) == (2, *expected)
    assert expected == (math.ceil(hw[0] * scale), math.ceil(hw[1] * scale))


def test_out_size_argument() -> None:
    x = torch.rand(3, 20, 30, dtype=torch.float64)
    assert imresize(x, out_size=(7, 45)).shape == (3, 7, 45)
    # same size as a scale gives the same result
    assert torch.equal(imresize(x, out_size=(10, 15)), imresize(x, scale=0.5))
    with pytest.raises(ValueError):
        imresize(x, scale=0.5, out_size=(10, 15))
    with pytest.raises(ValueError):
        imresize(x)
    with pytest.raises(TypeError):
        imresize(x.long(), scale=0.5)


@pytest.mark.parametrize("s", SCALES)
def test_upscale_shapes_constant_and_no_antialias_effect(s) -> None:
    x = torch.rand(3, 13, 9)
    up = imresize(x, scale=s)
    assert up.shape == (3, 13 * s, 9 * s) and torch.isfinite(up).all()
    assert torch.equal(up, imresize(x, scale=s, antialias=False))
    const = torch.full((3, 13, 9), 77, dtype=torch.uint8)
    assert torch.equal(imresize(const, scale=s), torch.full((3, 13 * s, 9 * s), 77, dtype=torch.uint8))
    constf = torch.full((1, 13, 9), 0.3, dtype=torch.float64)
    # rows of weights sum to 1 up to their float64 normalisation (gamma(taps) relative): 0.3 +- gamma * |terms|
    abs_terms, taps = _abs_path(constf, s)
    assert_within(
        imresize(constf, scale=s), torch.full_like(abs_terms, 0.3), gamma(3 * taps, torch.float64) * abs_terms
    )


def test_linear_ramp_reproduced_inside() -> None:
    # The Keys cubic reproduces linear functions: away from the borders, samples land on the ramp at
    # MATLAB's input coordinate u = x / s + 0.5 (1 - 1 / s) (1-based), both up and (antialiased) down.
    n = 48
    ramp = torch.arange(1, n + 1, dtype=torch.float64).repeat(4, 1)  # value == 1-based column index
    for s in (2.0, 0.5, 1 / 3):
        out = imresize(ramp, out_size=(4, math.ceil(n * s)), antialias=True)[0]
        x = torch.arange(1, out.numel() + 1, dtype=torch.float64)
        u = x / s + 0.5 * (1 - 1 / s)
        margin = int(2 / min(s, 1)) + 2
        inside = (u > margin) & (u < n + 1 - margin)
        assert inside.sum() > 5
        # exact in real arithmetic (symmetric taps / Keys reproduces lines); float64 rounding of the kernel
        # polynomial (terms <= 10 -> ~40 u per weight) over <= 14 taps of values <= 48 is < 3e-12, far below 1e-9
        assert torch.allclose(out[inside], u[inside], rtol=0, atol=1e-9)


def test_batched_equals_per_image() -> None:
    batch = _rand_u8(4, 3, 33, 27, seed=1)
    for s in (1 / 2, 1 / 3, 2.0):
        out = imresize(batch, scale=s)
        per = torch.stack([imresize(b, scale=s) for b in batch])
        assert torch.equal(out, per)
        fb = batch.float() / 255
        # float32 batched vs per image (the matmul may block differently): two evaluations of the same two chained
        # dot products, <= 2 gamma(taps) times the sum of |terms|
        abs_terms, taps = _abs_path(fb, s)
        per_image = torch.stack([imresize(b, scale=s) for b in fb])
        assert_within(imresize(fb, scale=s).double(), per_image.double(), 2 * gamma(taps) * abs_terms, f"x{s}")
    # a bare (H, W) tensor works too
    assert torch.equal(imresize(batch[0, 0], scale=0.5), imresize(batch[0, :1], scale=0.5)[0])


def test_non_contiguous_inputs() -> None:
    hwc = _rand_u8(40, 36, 3, seed=2)
    chw = hwc.permute(2, 0, 1)  # channels-last view
    assert not chw.is_contiguous()
    assert torch.equal(imresize(chw, scale=0.25), imresize(chw.contiguous(), scale=0.25))
    strided = _rand_u8(3, 80, 72, seed=3)[:, ::2, ::2]
    assert torch.equal(imresize(strided, scale=1 / 3), imresize(strided.contiguous(), scale=1 / 3))
    t = torch.rand(2, 30, 40).transpose(-1, -2)
    abs_terms, taps = _abs_path(t, 0.5)  # strided vs contiguous float32 matmul: as in test_batched_equals_per_image
    assert_within(
        imresize(t, scale=0.5).double(), imresize(t.contiguous(), scale=0.5).double(), 2 * gamma(taps) * abs_terms
    )
    # numpy helper: HxWxC, HxW, same answer as the tensor path
    assert np.array_equal(imresize_np(hwc.numpy(), 0.25), imresize(chw, scale=0.25).permute(1, 2, 0).numpy())
    assert np.array_equal(imresize_np(hwc[:, :, 0].numpy(), 0.25), imresize(chw[0], scale=0.25).numpy())


def test_modcrop_tensor_and_numpy() -> None:
    t = torch.zeros(2, 3, 17, 22)
    assert modcrop(t, 4).shape == (2, 3, 16, 20)
    assert modcrop(t, 3).shape == (2, 3, 15, 21)
    a = np.zeros((17, 22, 3), np.uint8)
    assert modcrop(a, 4).shape == (16, 20, 3)
    assert modcrop(a[:, :, 0], 3).shape == (15, 21)
    assert isinstance(modcrop(a, 2), np.ndarray) and isinstance(modcrop(t, 2), torch.Tensor)


def test_bicubic_upscale_works_on_the_8bit_values() -> None:
    photo = torch.from_numpy(load_image(sample_files("train")[1])).permute(2, 0, 1)[:, :96, :120]
    lr8 = imresize(photo.contiguous(), scale=0.25)
    lr = to_float(lr8)[None]
    up = bicubic_upscale(lr, 4)
    assert up.dtype == torch.float32 and up.shape == (1, 3, 96, 120)
    assert torch.equal(up, to_float(imresize(lr8, scale=4))[None])  # MATLAB imresize(LR uint8, 4), then v / 255
    # a float LR less than half a level off its 8-bit values is quantised first: the same output
    jitter = (torch.rand(lr.shape, generator=torch.Generator().manual_seed(0)) - 0.5) * (0.98 / 255)
    assert torch.equal(bicubic_upscale(lr + jitter, 4), up)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    x = _rand_u8(2, 3, 50, 40, seed=4)
    assert torch.equal(imresize(x.cuda(), scale=1 / 3).cpu(), imresize(x, scale=1 / 3))
