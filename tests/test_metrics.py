"""SR metrics vs an independent numpy implementation of the MATLAB protocol, on real benchmark images.

SR stand-in: the official MATLAB-bicubic LR image upscaled back with PIL bicubic (a real degradation).
"""

from __future__ import annotations

import math
import socket
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _tolerance import assert_within, gamma, unit_roundoff
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from sr_lightning.metrics import PSNRY, SSIMY, psnr_y, rgb_to_y, shave, ssim_y
from sr_lightning.ops.pixels import quantize

# ------------------------------------------------------------------------ numpy reference (MATLAB protocol)


def np_y(img_u8: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr luma on a uint8 HxWx3 image, kept in double (not rounded)."""
    rgb = img_u8.astype(np.float64)
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966]) / 255.0


def np_psnr(sr_u8: np.ndarray, hr_u8: np.ndarray, s: int) -> float:
    d = np_y(sr_u8)[s:-s, s:-s] - np_y(hr_u8)[s:-s, s:-s]
    return float(10.0 * np.log10(255.0**2 / np.mean(d**2)))


def np_ssim(sr_u8: np.ndarray, hr_u8: np.ndarray, s: int) -> float:
    """ssim_index.m: fspecial('gaussian', 11, 1.5), K = [0.01 0.03], L = 255, filter2(..., 'valid')."""
    x = np_y(sr_u8)[s:-s, s:-s]
    y = np_y(hr_u8)[s:-s, s:-s]
    ax = np.arange(11) - 5.0
    xx, yy = np.meshgrid(ax, ax)
    win = np.exp(-(xx**2 + yy**2) / (2 * 1.5**2))
    win /= win.sum()

    def filt(a: np.ndarray) -> np.ndarray:
        return np.einsum("ijkl,kl->ij", sliding_window_view(a, (11, 11)), win)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = filt(x), filt(y)
    s11 = filt(x * x) - mu1**2
    s22 = filt(y * y) - mu2**2
    s12 = filt(x * y) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    return float(m.mean())


# Tolerances. Ours and the reference are float64 throughout: Y within gamma(5) * 235 (~1e-13), the PSNR of a mean
# of n squares within 10 / ln 10 * gamma(n + 4) (~1e-11 dB for n ~ 1e4), SSIM's local variances E[x^2] - mu^2 within
# ~2 gamma(22) * 235^2 (~3e-10) against denominators >= C2 = 58.5 (~1e-11 per pixel). 1e-6 is 1e4 times above
# these bounds and 1e3 times below the smallest protocol change these tests tell apart.
FLOAT64_METRIC_TOL = 1e-6


def tm_psnr_bound(psnr: float, mse: float, n_updates: int) -> float:
    """Bound (dB) on torchmetrics' PSNR rounding: its states and formula are float32.

    SSE summed into a float32 state (gamma(n_updates + 1)), / count (u); 2 log(255) - log(mse) with logs within one
    ulp (2 u |log|) and a rounded subtraction; times 10 / log(10) (float32 log, division, product: gamma(4)).
    """
    u, log255, log_mse = unit_roundoff(), 2 * math.log(255.0), math.log(mse)
    base = log255 - log_mse
    err_base = gamma(n_updates + 2) + 2 * u * (log255 + abs(log_mse)) + u * abs(base)
    return 10 / math.log(10) * err_base + gamma(4) * abs(psnr)


# ----------------------------------------------------------------------------- real data


def load_pair(bench: Path, dataset: str, name: str, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(sr, hr) uint8 HxWx3: modcropped HR and the official LR upscaled with PIL bicubic."""
    hr = np.asarray(Image.open(bench / dataset / "HR" / f"{name}.png").convert("RGB"))
    h, w = hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale
    lr = Image.open(bench / dataset / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png").convert("RGB")
    sr = np.asarray(lr.resize((w, h), Image.BICUBIC))
    return sr, hr[:h, :w]


def to_t(img_u8: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float32 1x3xHxW in [0, 1] (the package convention)."""
    return torch.from_numpy(np.array(img_u8)).permute(2, 0, 1)[None].float() / 255.0


# differently sized crops of real images: (dataset, name, top, left, height, width)
CROPS = [
    ("Set5", "butterfly", 60, 40, 96, 120),
    ("Set5", "bird", 100, 80, 72, 64),
    ("Set5", "woman", 150, 20, 110, 88),
    ("Set14", "zebra", 120, 200, 64, 100),
    ("Set14", "comic", 30, 50, 90, 90),
]


def crop_pairs(bench: Path, scale: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for ds, name, t, le, h, w in CROPS:
        sr, hr = load_pair(bench, ds, name, scale)
        out.append((sr[t : t + h, le : le + w], hr[t : t + h, le : le + w]))
    return out


# ----------------------------------------------------------------------------- tests


@pytest.mark.shared
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_per_image_values_match_numpy(benchmark_dir, scale):
    pairs = crop_pairs(benchmark_dir, scale)
    for sr, hr in pairs:
        p = psnr_y(to_t(sr), to_t(hr), scale)
        s = ssim_y(to_t(sr), to_t(hr), scale)
        assert p.shape == s.shape == (1,) and p.dtype == s.dtype == torch.float64
        assert abs(p.item() - np_psnr(sr, hr, scale)) < FLOAT64_METRIC_TOL
        assert abs(s.item() - np_ssim(sr, hr, scale)) < FLOAT64_METRIC_TOL
        assert 15.0 < p.item() < 45.0 and 0.3 < s.item() < 1.0  # a real, imperfect reconstruction


@pytest.mark.shared
def test_full_image_psnr_matches_numpy(benchmark_dir):
    for name in ["baby", "head", "woman"]:
        sr, hr = load_pair(benchmark_dir, "Set5", name, 3)
        assert abs(psnr_y(to_t(sr), to_t(hr), 3).item() - np_psnr(sr, hr, 3)) < FLOAT64_METRIC_TOL


@pytest.mark.shared
def test_batch_gives_per_image_scores(benchmark_dir):
    pairs = [load_pair(benchmark_dir, "Set5", n, 2) for n in ["bird", "head"]]
    pairs = [(sr[:128, :128], hr[:128, :128]) for sr, hr in pairs]  # same size -> one batch
    sr_b = torch.cat([to_t(sr) for sr, _ in pairs])
    hr_b = torch.cat([to_t(hr) for _, hr in pairs])
    expected_p = [np_psnr(sr, hr, 2) for sr, hr in pairs]
    expected_s = [np_ssim(sr, hr, 2) for sr, hr in pairs]
    np.testing.assert_allclose(psnr_y(sr_b, hr_b, 2).numpy(), expected_p, rtol=0, atol=FLOAT64_METRIC_TOL)
    np.testing.assert_allclose(ssim_y(sr_b, hr_b, 2).numpy(), expected_s, rtol=0, atol=FLOAT64_METRIC_TOL)


@pytest.mark.shared
def test_gray_image_scored_as_replicated_rgb(benchmark_dir):
    """Set14 bridge.png is mode L: a 1-channel input scores like the (g, g, g) RGB image."""
    sr, hr = load_pair(benchmark_dir, "Set14", "bridge", 4)  # RGB-replicated by convert("RGB")
    sr, hr = sr[:120, :100], hr[:120, :100]
    g_sr, g_hr = to_t(sr)[:, :1], to_t(hr)[:, :1]
    assert torch.equal(rgb_to_y(quantize(g_sr)), rgb_to_y(quantize(to_t(sr))))
    # exact: the same float64 operations on the same values (the gray channel expanded vs stored three times)
    assert psnr_y(g_sr, g_hr, 4).item() == psnr_y(to_t(sr), to_t(hr), 4).item()
    assert abs(psnr_y(g_sr, g_hr, 4).item() - np_psnr(sr, hr, 4)) < FLOAT64_METRIC_TOL
    assert abs(ssim_y(g_sr, g_hr, 4).item() - np_ssim(sr, hr, 4)) < FLOAT64_METRIC_TOL


@pytest.mark.shared
def test_library_defaults_give_other_numbers(benchmark_dir):
    """torchmetrics / kornia conventions differ from the papers' protocol on the same real inputs."""
    import kornia
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    s = 3
    pairs = crop_pairs(benchmark_dir, s)
    ours_p = np.array([psnr_y(to_t(a), to_t(b), s).item() for a, b in pairs])
    ours_s = np.array([ssim_y(to_t(a), to_t(b), s).item() for a, b in pairs])
    ref_p = np.array([np_psnr(a, b, s) for a, b in pairs])
    ref_s = np.array([np_ssim(a, b, s) for a, b in pairs])
    np.testing.assert_allclose(ours_p, ref_p, rtol=0, atol=FLOAT64_METRIC_TOL)
    np.testing.assert_allclose(ours_s, ref_s, rtol=0, atol=FLOAT64_METRIC_TOL)

    # The exact same Y inputs (quantised, float Y, shaved) fed to the libraries:
    ys = [(shave(rgb_to_y(quantize(to_t(a))), s), shave(rgb_to_y(quantize(to_t(b))), s)) for a, b in pairs]

    # torchmetrics PSNR accumulates one pooled MSE over all images (dim=None): not the mean of per-image PSNR.
    tm_psnr = PeakSignalNoiseRatio(data_range=255.0)
    for ya, yb in ys:
        tm_psnr.update(ya, yb)
    sse = sum(float(((ya - yb) ** 2).sum()) for ya, yb in ys)
    npix = sum(ya.numel() for ya, _ in ys)
    pooled = 10 * np.log10(255.0**2 / (sse / npix))
    # torchmetrics keeps float32 states and computes in float32: a few 1e-6 dB, not float64's 1e-11
    assert abs(tm_psnr.compute().item() - pooled) <= tm_psnr_bound(pooled, sse / npix, len(ys))
    assert abs(pooled - ref_p.mean()) > 0.1  # 2.0 dB here

    # RGB PSNR (what PeakSignalNoiseRatio(data_range=1.0) gives on the [0,1] tensors) is not Y PSNR.
    rgb = [
        PeakSignalNoiseRatio(data_range=1.0)(to_t(a)[..., s:-s, s:-s], to_t(b)[..., s:-s, s:-s]).item()
        for a, b in pairs
    ]
    assert np.all(np.abs(np.array(rgb) - ref_p) > 0.1)

    # torchmetrics SSIM reflect-pads ('same'): other numbers, even on our Y with L = 255.
    tm_ssim = np.array([StructuralSimilarityIndexMeasure(data_range=255.0)(ya, yb).item() for ya, yb in ys])
    assert np.all(np.abs(tm_ssim - ref_s) > 1e-4)
    # kornia's default padding='same' differs too; its full-range Y (0.299 R + ...) on [0, 1] even more.
    k_same = np.array([kornia.metrics.ssim(ya, yb, 11, max_val=255.0).mean().item() for ya, yb in ys])
    assert np.all(np.abs(k_same - ref_s) > 1e-4)
    k_full = []
    for a, b in pairs:
        ka = kornia.color.rgb_to_y(to_t(a).double())[..., s:-s, s:-s]
        kb = kornia.color.rgb_to_y(to_t(b).double())[..., s:-s, s:-s]
        k_full.append(kornia.metrics.ssim(ka, kb, 11, max_val=1.0, padding="valid").mean().item())
    assert np.all(np.abs(np.array(k_full) - ref_s) > 1e-3)
    # ...while kornia with the MATLAB settings ('valid', L = 255, no eps) on our Y agrees with the numpy reference
    # (this call is ssim_y's; before ssim_y used it, its own filter agreed with it within 1.5e-15 on Set5/Set14).
    # float64 with a 2-D 11x11 window: E[x^2] within gamma(121) * 235^2 ~ 7e-10, so the variances within ~1.5e-9,
    # over denominators >= C2 = 58.5: <= ~1e-10 per SSIM value (ours too), inside 1e-9.
    k_valid = [kornia.metrics.ssim(ya, yb, 11, 255.0, eps=0.0, padding="valid").mean().item() for ya, yb in ys]
    np.testing.assert_allclose(k_valid, ref_s, rtol=0, atol=1e-9)


def test_kornia_ycbcr_is_full_range_y():
    """kornia.color.rgb_to_ycbcr's Y is full range (0.299 R + 0.587 G + 0.114 B); the papers' is MATLAB's studio
    swing, 16 + 219/255 of it: every Y difference shrinks by 219/255, so PSNR rises by 20 log10(255/219) = 1.32 dB."""
    from sr_lightning.data.sample import sample_files
    from sr_lightning.ops.imresize import imresize

    path = next(p for p in sample_files("heldout") if p.name == "chelsea.png")
    hr8 = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None]
    s = 3
    hr8 = hr8[..., : hr8.shape[-2] // s * s, : hr8.shape[-1] // s * s]
    sr8 = imresize(imresize(hr8, scale=1 / s), scale=s)  # a real MATLAB-bicubic reconstruction
    hr, sr = hr8.double() / 255, sr8.double() / 255
    import kornia

    k_y = kornia.color.rgb_to_ycbcr(hr)[:, :1] * 255
    ours = rgb_to_y(hr8.double())
    # float64, values <= 255: ours within gamma(7) * 235, kornia's (3 products, 2 sums, / 255, * 255) within
    # gamma(8) * 255, the affine map within gamma(3) * 235
    bound = gamma(18, torch.float64) * 255
    assert_within(ours, 16 + 219 / 255 * k_y, bound, "Y")
    assert k_y.amin() < 16 <= ours.amin()  # dark pixels: full range goes below studio swing's black level

    def k_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
        ya = shave(kornia.color.rgb_to_ycbcr(a)[:, :1] * 255, s)
        yb = shave(kornia.color.rgb_to_ycbcr(b)[:, :1] * 255, s)
        return 10 * math.log10(255.0**2 / float(((ya - yb) ** 2).mean()))

    ours_p = psnr_y(sr, hr, s).item()
    gap = 20 * math.log10(255 / 219)
    # each PSNR: a float64 mean of n squares (gamma(n + 20) relative on the MSE) -> 10 / ln 10 times that in dB
    n = shave(hr[:, :1], s).numel()
    assert abs((ours_p - k_psnr(sr, hr)) - gap) <= 2 * 10 / math.log(10) * gamma(n + 20, torch.float64)
    assert 20.0 < ours_p < 45.0


@pytest.mark.shared
def test_metric_is_mean_of_per_image_scores(benchmark_dir):
    s = 2
    pairs = crop_pairs(benchmark_dir, s)  # five different sizes
    mp_, ms = PSNRY(shave=s), SSIMY(shave=s)
    for a, b in pairs:
        mp_.update(to_t(a), to_t(b))
        ms.update(to_t(a), to_t(b))
    per_p = [np_psnr(a, b, s) for a, b in pairs]
    per_s = [np_ssim(a, b, s) for a, b in pairs]
    assert abs(mp_.compute().item() - np.mean(per_p)) < FLOAT64_METRIC_TOL
    assert abs(ms.compute().item() - np.mean(per_s)) < FLOAT64_METRIC_TOL
    assert mp_.compute().dtype == torch.float64
    # not the PSNR of the pooled MSE over all pixels
    d = np.concatenate([(np_y(a)[s:-s, s:-s] - np_y(b)[s:-s, s:-s]).ravel() for a, b in pairs])
    assert abs(mp_.compute().item() - 10 * np.log10(255.0**2 / np.mean(d**2))) > 0.1
    mp_.reset()
    assert int(mp_.count) == 0


@pytest.mark.shared
def test_bicubic_baseline_near_published(benchmark_dir):
    """Set5 x4 bicubic under this protocol lands on the published MATLAB-bicubic baseline 28.42 / 0.8104.

    Our upscaler is PIL bicubic, not MATLAB imresize, hence the tolerance; a pooled MSE (28.09 dB) or
    full-range Y (~1.3 dB lower) would fail.
    """
    mp_, ms = PSNRY(4), SSIMY(4)
    for name in ["baby", "bird", "butterfly", "head", "woman"]:
        sr, hr = load_pair(benchmark_dir, "Set5", name, 4)
        mp_.update(to_t(sr), to_t(hr))
        ms.update(to_t(sr), to_t(hr))
    assert abs(mp_.compute().item() - 28.42) < 0.03
    assert abs(ms.compute().item() - 0.8104) < 0.002


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dist_worker(rank: int, world: int, port: int, shards: list, scale: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    try:
        mp_, ms = PSNRY(scale), SSIMY(scale)
        for sr, hr in shards[rank]:
            mp_.update(sr, hr)
            ms.update(sr, hr)
        # compute() syncs the states for the computation, then restores the local ones
        res = {"psnr": mp_.compute(), "ssim": ms.compute(), "local_count": mp_.count.clone()}
        torch.save(res, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.shared
def test_distributed_sync_equals_single_process(benchmark_dir, tmp_path):
    s = 3
    pairs = [(to_t(a), to_t(b)) for a, b in crop_pairs(benchmark_dir, s)]
    single_p, single_s = PSNRY(s), SSIMY(s)
    for a, b in pairs:
        single_p.update(a, b)
        single_s.update(a, b)
    shards = [pairs[:3], pairs[3:]]  # unequal numbers of differently sized images per rank
    mp.spawn(_dist_worker, args=(2, _free_port(), shards, s, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        res = torch.load(tmp_path / f"rank{rank}.pt")
        assert int(res["local_count"]) == len(shards[rank])
        # float64 sums of 5 scores (< 50) in another order: <= 2 gamma(6) * 250 ~ 3e-13, far inside 1e-9
        assert abs(res["psnr"].item() - single_p.compute().item()) < 1e-9
        assert abs(res["ssim"].item() - single_s.compute().item()) < 1e-9
    # a rank alone would give another value: the sync mattered
    alone = PSNRY(s)
    for a, b in shards[0]:
        alone.update(a, b)
    assert abs(alone.compute().item() - single_p.compute().item()) > 1e-3


def test_quantize_rounds_like_matlab_im2uint8():
    # every 8-bit level survives the float32 round trip
    k = torch.arange(256, dtype=torch.float64)
    assert torch.equal(quantize((k / 255).float()), k)
    # exact ties x * 255 = k + 0.5 round half away from zero (MATLAB uint8), not half to even (torch.round)
    x = (k[:255] + 0.5) / 255
    ties = x * 255 == k[:255] + 0.5
    assert ties.sum() > 100
    assert torch.equal(quantize(x)[ties], k[:255][ties] + 1)
    assert not torch.equal(torch.round(x * 255)[ties], k[:255][ties] + 1)
    assert quantize(torch.tensor([0.5 / 255, 2.5 / 255], dtype=torch.float64)).tolist() == [1.0, 3.0]
    below = torch.nextafter(x, torch.zeros_like(x))
    strict = below * 255 < k[:255] + 0.5  # the product must stay below the tie
    assert strict.sum() > 100
    assert torch.equal(quantize(below)[strict], k[:255][strict])
    assert quantize(torch.tensor([-0.2, 1.7])).tolist() == [0.0, 255.0]
    assert quantize(torch.tensor([0.5])).dtype == torch.float64


def test_y_formula_and_shave():
    rgb = torch.tensor([0.0, 255.0, 10.0, 200.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2).clone()
    rgb[:, 1] = 100.0
    y = rgb_to_y(rgb)
    rgb64 = rgb.double()
    expected = 16 + (65.481 * rgb64[:, 0] + 128.553 * 100.0 + 24.966 * rgb64[:, 2]) / 255
    assert y.shape == (1, 1, 2, 2) and y.dtype == torch.float64
    # float64: 3 products, 3 additions, a division, all terms >= 0: within gamma(7) * Y each
    assert_within(y[:, 0], expected, 2 * gamma(7, torch.float64) * expected, "Y")
    assert rgb_to_y(torch.full((1, 3, 1, 1), 255.0)).item() == pytest.approx(235.0, rel=gamma(7, torch.float64))
    img = torch.arange(36.0).view(1, 1, 6, 6)
    assert torch.equal(shave(img, 2), img[..., 2:4, 2:4])
    assert shave(img, 0) is img


def test_identical_images_and_empty_metric():
    torch.manual_seed(0)
    img = torch.rand(2, 3, 24, 24)
    assert torch.isinf(psnr_y(img, img, 2)).all()
    # 1 up to float64 rounding of the moments (~1e-11, see FLOAT64_METRIC_TOL's derivation)
    assert (ssim_y(img, img, 2) - 1).abs().max() <= FLOAT64_METRIC_TOL
    m = PSNRY(2)
    m.update(img, img)
    m.update(img, (img + 0.05).clamp(0, 1))
    assert m.compute().item() == float("inf")  # mean including +inf is +inf, never NaN
    with pytest.warns(UserWarning):
        assert torch.isnan(PSNRY(2).compute())


def test_states_stay_float64_under_module_dtype_casts():
    torch.manual_seed(0)
    a = torch.rand(2, 3, 30, 30)
    b = (a + 0.01 * torch.randn_like(a)).clamp(0, 1)
    ref = PSNRY(2)
    ref.update(a, b)
    for m in (PSNRY(2).to(torch.bfloat16), PSNRY(2).half(), PSNRY(2).to("cpu", torch.float16)):
        assert m.score_sum.dtype == m.count.dtype == torch.float64
        m.update(a, b)
        # exact: the update scores in float64 from the same float32 inputs whatever the module dtype
        assert m.compute().dtype == torch.float64 and m.compute().item() == ref.compute().item()
        m.reset()
        assert m.score_sum.dtype == torch.float64


def test_invalid_inputs_raise():
    a = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="same shape"):
        psnr_y(a, torch.rand(1, 3, 32, 30), 2)
    with pytest.raises(ValueError, match="C in"):
        psnr_y(torch.rand(1, 4, 32, 32), torch.rand(1, 4, 32, 32), 2)
    with pytest.raises(ValueError, match="NCHW"):
        ssim_y(a[0], a[0], 2)
    with pytest.raises(ValueError, match="11x11"):
        ssim_y(torch.rand(1, 3, 20, 40), torch.rand(1, 3, 20, 40), 5)  # 10 rows left
    with pytest.raises(ValueError, match="nothing would remain"):
        psnr_y(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), 4)
    with pytest.raises(ValueError, match=">= 0"):
        PSNRY(-1)
