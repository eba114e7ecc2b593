"""GV and EG losses (EFDN Sec. 3.3) against an independent numpy computation on a real Set5 crop, plus their
edge cases, the automatic λ from EDBB branch gains, and their persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _tolerance import assert_within, gamma, two_evaluations, unit_roundoff
from hydra.utils import instantiate
from scipy.ndimage import gaussian_filter
from torch import nn

from sr_lightning.data.io import load_image
from sr_lightning.losses import EdgeGradientLoss, GradientVarianceLoss, edge_lambdas_from_gains
from sr_lightning.losses.eg import DEFAULT_GAIN_SUFFIXES, collect_edge_gains
from sr_lightning.losses.gradient_variance import patch_variance
from sr_lightning.ops.edges import GRAY_BT601, GRAY_MATLAB, LAPLACIAN, gradient_maps, to_gray

# The filters written out here again (cross-correlation, as torch's conv2d) so the reference owns its copy.
NP_FILTERS = {
    "sobel_x": np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64),
    "sobel_y": np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64),
    "laplacian": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64),
}


# ---------------------------------------------------------------- numpy reference (float64, explicit loops)
def np_gray(img: np.ndarray) -> np.ndarray:
    """HxWx3 -> HxW with the official GV code's weights 0.2989 R + 0.5870 G + 0.1140 B."""
    return 0.2989 * img[..., 0] + 0.5870 * img[..., 1] + 0.1140 * img[..., 2]


def np_filter(gray: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """3x3 cross-correlation with one pixel of zero padding (same size)."""
    padded = np.pad(gray, 1)
    out = np.zeros_like(gray)
    h, w = gray.shape
    for a in range(3):
        for b in range(3):
            out += kernel[a, b] * padded[a : a + h, b : b + w]
    return out


def np_variance_map(grad: np.ndarray, n: int) -> np.ndarray:
    """Unbiased variance of every whole n x n patch, patch by patch (trailing rows/columns dropped)."""
    rows, cols = grad.shape[0] // n, grad.shape[1] // n
    out = np.zeros((rows, cols))
    for i in range(rows):
        for j in range(cols):
            patch = grad[i * n : (i + 1) * n, j * n : (j + 1) * n].ravel()
            out[i, j] = ((patch - patch.mean()) ** 2).sum() / (n * n - 1)
    return out


def np_terms(sr: np.ndarray, hr: np.ndarray, n: int) -> dict[str, float]:
    out = {"l1": float(np.abs(sr - hr).mean())}
    for name, k in NP_FILTERS.items():
        v_sr = np_variance_map(np_filter(np_gray(sr), k), n)
        v_hr = np_variance_map(np_filter(np_gray(hr), k), n)
        out[name] = float(((v_sr - v_hr) ** 2).mean())
    return out


# ---------------------------------------------------------------- float32 rounding bounds of the same terms
def np_variance_bound(grad: np.ndarray, err: np.ndarray, n: int) -> np.ndarray:
    """Bound on |float32 variance - exact| per patch, given |grad error| <= err (first order + square term).

    S = sum (g - m)^2 moves by <= 2 sum |g - m| err + sum err^2 (dS/dg = 2 (g - m); m's own change cancels);
    computing S (one-pass Welford or two-pass, any order) adds <= gamma(4 N) sum g^2 (Chan, Golub & LeVeque 1983:
    error <~ N u kappa S with kappa^2 = sum g^2 / S, so <= N u sum g^2), N = n^2; then the division by N - 1.
    """
    rows, cols = grad.shape[0] // n, grad.shape[1] // n
    out = np.zeros((rows, cols))
    big_n = n * n
    for i in range(rows):
        for j in range(cols):
            g = grad[i * n : (i + 1) * n, j * n : (j + 1) * n].ravel()
            e = err[i * n : (i + 1) * n, j * n : (j + 1) * n].ravel()
            ds = 2 * (np.abs(g - g.mean()) * e).sum() + (e**2).sum() + gamma(4 * big_n + 2) * (g**2).sum()
            out[i, j] = ds / (big_n - 1)
    return out


def np_variance_and_bound(img: np.ndarray, kernel: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Patch-variance map of one HxWx3 image (exact, float64) and the bound on its float32 error.

    Gray: 3 products of float32-rounded weights + 2 additions -> <= gamma(5) * gray (inputs and weights >= 0).
    3x3 filter: a 9-term dot product -> <= gamma(9) * (|K| * gray), plus |K| * (gray error). Then the variance.
    """
    gray = np_gray(img)
    grad = np_filter(gray, kernel)
    err = np_filter(gamma(5) * gray, np.abs(kernel)) + gamma(9) * np_filter(gray, np.abs(kernel))
    return np_variance_map(grad, n), np_variance_bound(grad, err, n)


def np_term_bounds(sr: np.ndarray, hr: np.ndarray, n: int) -> dict[str, float]:
    """Bounds on |float32 term - exact| for `EdgeGradientLoss.terms` (tests/_tolerance.py, Higham's gamma).

    Per filter: the variance maps (np_variance_and_bound); the MSE of P differences d moves by 2 |d| e + e^2 per
    patch and rounds by gamma(P + 3) * term. L1: |a - b| rounded, a sum of sr.size terms, a division.
    The float64 reference's own rounding is 2**-29 times smaller than these: the factor (1 + 2**-29) covers it.
    """
    out = {"l1": gamma(sr.size + 2) * float(np.abs(sr - hr).mean())}
    for name, k in NP_FILTERS.items():
        (v_sr, e_sr), (v_hr, e_hr) = np_variance_and_bound(sr, k, n), np_variance_and_bound(hr, k, n)
        d = v_sr - v_hr
        ed = e_sr + e_hr + unit_roundoff() * np.abs(d)
        out[name] = float((2 * np.abs(d) * ed + ed**2).mean()) + gamma(d.size + 3) * float((d**2).mean())
    return {k: b * (1 + 2**-29) for k, b in out.items()}


# ---------------------------------------------------------------- data
@pytest.fixture(scope="module")
def pair(benchmark_dir):
    """A 51x67 crop of Set5 butterfly (HR) and a blurred + noisy copy (SR stand-in), both float32 in [0, 1]."""
    hr = load_image(benchmark_dir / "Set5" / "HR" / "butterfly.png")[100:151, 60:127].astype(np.float64) / 255
    rng = np.random.default_rng(0)
    sr = gaussian_filter(hr, sigma=(1.2, 1.2, 0)) + rng.normal(0, 0.02, hr.shape)
    hr32, sr32 = hr.astype(np.float32), np.clip(sr, 0, 1).astype(np.float32)
    return sr32, hr32


def to_t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]


# ---------------------------------------------------------------- GV / EG values
@pytest.mark.parametrize("patch_size", [8, 5])
def test_terms_match_numpy(pair, patch_size):
    sr, hr = pair  # 51x67: neither 8 nor 5 divides both sides, the trailing rows/columns are dropped
    ref = np_terms(sr.astype(np.float64), hr.astype(np.float64), patch_size)
    bound = np_term_bounds(sr.astype(np.float64), hr.astype(np.float64), patch_size)
    loss = EdgeGradientLoss(patch_size=patch_size, lambdas=(0.5, 0.25, 2.0))
    got = {k: v.item() for k, v in loss.terms(to_t(sr), to_t(hr)).items()}
    assert set(got) == set(ref)
    for k in ref:
        assert ref[k] > 1e-4, k  # the degraded copy really differs in every term
        assert bound[k] < 1e-3 * ref[k], k  # tight enough to see a wrong gray weight, padding or variance
        assert got[k] == pytest.approx(ref[k], abs=bound[k]), k
    lam = {"l1": 1.0, "sobel_x": 0.5, "sobel_y": 0.25, "laplacian": 2.0}  # powers of two: exact products
    total = sum(lam[k] * ref[k] for k in ref)
    # the weighted sum of 4 terms adds gamma(4) * total
    total_bound = sum(lam[k] * bound[k] for k in ref) + gamma(4) * total
    assert loss(to_t(sr), to_t(hr)).item() == pytest.approx(total, abs=total_bound)

    gv = GradientVarianceLoss(patch_size=patch_size)  # the GV paper's loss: Sobel-x + Sobel-y
    gv_ref = ref["sobel_x"] + ref["sobel_y"]
    gv_bound = bound["sobel_x"] + bound["sobel_y"] + gamma(2) * gv_ref
    assert gv(to_t(sr), to_t(hr)).item() == pytest.approx(gv_ref, abs=gv_bound)
    gv_terms = GradientVarianceLoss(patch_size, filters=("laplacian",)).terms(to_t(sr), to_t(hr))
    assert list(gv_terms) == ["laplacian"]
    assert gv_terms["laplacian"].item() == pytest.approx(ref["laplacian"], abs=bound["laplacian"])


def test_zero_on_identical_images(pair):
    _, hr = pair
    x = to_t(hr)
    # Exact: SR and HR go through the same operations on bit-identical values, so the variance maps are identical.
    assert GradientVarianceLoss()(x, x.clone()).item() == 0.0
    assert EdgeGradientLoss()(x, x.clone()).item() == 0.0
    assert all(v.item() == 0.0 for v in EdgeGradientLoss().terms(x, x.clone()).values())


@pytest.mark.parametrize("loss", [GradientVarianceLoss(), EdgeGradientLoss(lambdas=(1.0, 1.0, 1.0))])
def test_gradients_reach_sr(pair, loss):
    sr, hr = pair
    x = to_t(sr).requires_grad_(True)
    loss(x, to_t(hr)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_variance_is_unbiased():
    maps = torch.arange(64.0).view(1, 1, 8, 8)  # one patch holding 0..63
    v = patch_variance(maps, 8)
    assert v.shape == (1, 1, 1, 1)
    # float32 variance of 64 terms: <= gamma(4 N + 2) sum x^2 / (N - 1) (see np_variance_bound), ~0.02 here
    tol = gamma(4 * 64 + 2) * float((maps**2).sum()) / 63
    assert v.item() == pytest.approx(np.var(np.arange(64.0), ddof=1), abs=tol)  # 346.67, not the biased 341.25
    assert v.item() != pytest.approx(np.var(np.arange(64.0), ddof=0), abs=tol)


def test_sizes_not_divisible_are_cropped_and_too_small_raise():
    x = torch.rand(2, 1, 19, 21)
    assert patch_variance(x, 8).shape == (2, 1, 2, 2)
    assert torch.equal(patch_variance(x, 8), patch_variance(x[..., :16, :16], 8))
    assert patch_variance(x, 6).shape == (2, 1, 3, 3)
    img = torch.rand(1, 3, 7, 30)
    with pytest.raises(ValueError, match="smaller than one 8x8 patch"):
        GradientVarianceLoss()(img, img)
    with pytest.raises(ValueError, match="patch_size must be >= 2"):
        GradientVarianceLoss(patch_size=1)
    with pytest.raises(ValueError, match="shapes differ"):
        GradientVarianceLoss()(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 16))


def test_smallest_image_and_batch():
    torch.manual_seed(0)
    x, y = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)  # one 8x8 patch per image (the size test_config uses)
    for loss in (GradientVarianceLoss(), EdgeGradientLoss()):
        value = loss(x, y)
        assert value.ndim == 0 and torch.isfinite(value) and value > 0
    # A mirrored image has the same gradient variance over a whole patch (zero padding is symmetric, the filters
    # are mirror-(anti)symmetric), so the GV of x against x.flip(-1) vanishes: only the L1 part of EG remains.
    # In float32 each variance map is off by <= e (np_variance_and_bound): each term <= mean((e_x + e_flip)^2).
    images = [img.permute(1, 2, 0).double().numpy() for img in x]
    term_bound = {}
    for name, k in NP_FILTERS.items():
        ed = [np_variance_and_bound(img, k, 8)[1] + np_variance_and_bound(img[:, ::-1], k, 8)[1] for img in images]
        term_bound[name] = float((np.stack(ed) ** 2).mean()) * (1 + gamma(4))
    sobel_bound = term_bound["sobel_x"] + term_bound["sobel_y"]
    assert GradientVarianceLoss()(x, x.flip(-1)).item() == pytest.approx(0.0, abs=sobel_bound)
    # L1 here and inside the loss: two evaluations of a mean of |differences| (x.numel() terms), + the GV terms
    # weighted by the default lambdas (1e-3), + the final sums (gamma(4)).
    l1 = (x - x.flip(-1)).abs().mean().item()
    eg_bound = two_evaluations(l1, x.numel() + 2) + 1e-3 * sum(term_bound.values()) + gamma(4) * l1
    assert EdgeGradientLoss()(x, x.flip(-1)).item() == pytest.approx(l1, abs=eg_bound)


# ---------------------------------------------------------------- edges.py additions
def test_edge_options(pair):
    _, hr = pair
    x = to_t(hr)
    # float32 gray: 3 products of rounded weights + 2 additions (gamma(4) * gray, all terms >= 0), and the float64
    # reference rounded once to float32: gamma(5) * gray. BT.601 instead of MATLAB's weights moves it by ~1e-4.
    ref_gray = np_gray(hr)
    assert_within(to_gray(x, GRAY_MATLAB)[0, 0].double(), torch.from_numpy(ref_gray), gamma(5) * ref_gray, "gray")
    assert torch.equal(to_gray(x), to_gray(x, GRAY_BT601))
    zeros = gradient_maps(x)
    rep = gradient_maps(x, padding_mode="replicate", filters=["laplacian"])
    assert list(rep) == ["laplacian"]
    # Same inside, different on the border (replicate padding has no artificial edge there). Inside, both are the
    # same 9-term dot product on the same gray values, computed by two conv calls (input sizes differ, so may the
    # algorithm): they differ by <= 2 gamma(9) (|K| * |gray|) (values go down to ~1e-4, so no fixed atol fits).
    gray = to_gray(x)
    abs_terms = F.conv2d(F.pad(gray.abs(), (1, 1, 1, 1), mode="replicate"), LAPLACIAN.abs().view(1, 1, 3, 3))
    bound = two_evaluations(abs_terms, 9)  # replicate padding adds |terms| at the border: covers both paddings
    diff = rep["laplacian"] - zeros["laplacian"]
    assert_within(diff[..., 1:-1, 1:-1], torch.zeros(()), bound[..., 1:-1, 1:-1], "interior laplacian")
    assert (diff.abs() > bound).any()
    with pytest.raises(ValueError, match="padding_mode"):
        gradient_maps(x, padding_mode="mirror")
    with pytest.raises(ValueError, match="unknown edge filters"):
        GradientVarianceLoss(filters=("sobel",))


# ---------------------------------------------------------------- λ
class FakeEdgeBranch(nn.Module):
    def __init__(self, gain: list[float], name: str = "gain") -> None:
        super().__init__()
        self.register_parameter(name, nn.Parameter(torch.tensor(gain)))
        self.bias = nn.Parameter(torch.full((len(gain),), 7.0))  # must not be picked up


class FakeEDBB(nn.Module):
    """Only the parameter layout of an EDBB: <block>.sobel_x.gain etc. (``name="scale"``: the layout before the
    branch parameter was renamed to ``gain``)."""

    def __init__(self, gx: list[float], gy: list[float], gl: list[float], name: str = "gain") -> None:
        super().__init__()
        self.sobel_x, self.sobel_y = FakeEdgeBranch(gx, name), FakeEdgeBranch(gy, name)
        self.laplacian = FakeEdgeBranch(gl, name)
        self.conv3x3 = nn.Conv2d(2, 2, 3, padding=1)


def fake_net(name: str = "gain") -> nn.Module:
    # pooled mean |gain|: x = (1+3+2+2)/4 = 2, y = (0.5+0.5+0.5+0.5)/4 = 0.5, l = (1.5+1.5+1+2)/4 = 1.5; sum 4
    return nn.Sequential(
        FakeEDBB([1.0, -3.0], [0.5, -0.5], [1.5, 1.5], name),
        nn.PReLU(2),
        FakeEDBB([2.0, 2.0], [-0.5, 0.5], [-1.0, 2.0], name),
    )


EXPECTED = (2.0 / 4, 0.5 / 4, 1.5 / 4)


def test_edge_lambdas_from_gains():
    got = edge_lambdas_from_gains(torch.tensor([1.0, -3.0]), torch.tensor([0.5]), torch.tensor([-1.5]), factor=2.0)
    # dyadic gains: every mean, sum and ratio is exact, so the values are too
    assert got == (2 * 2.0 / 4, 2 * 0.5 / 4, 2 * 1.5 / 4)
    assert sum(got) == 2.0
    with pytest.raises(ValueError, match="cannot normalise"):
        edge_lambdas_from_gains(torch.zeros(2), torch.zeros(2), torch.zeros(2))


def test_auto_lambdas_from_network(pair):
    loss = EdgeGradientLoss(lambdas="auto", auto_factor=3e-3)
    assert loss.needs_network
    sr, hr = pair
    with pytest.raises(RuntimeError, match="set_lambdas_from_network"):
        loss(to_t(sr), to_t(hr))
    got = loss.set_lambdas_from_network(fake_net())
    # exact dyadic ratios times 3e-3, in float64: one rounding
    assert got == pytest.approx(tuple(3e-3 * v for v in EXPECTED), rel=unit_roundoff(torch.float64))
    assert not loss.needs_network
    # the float32 buffer: one rounding of each float64 value
    assert loss.lambdas.tolist() == pytest.approx(list(got), rel=unit_roundoff())
    t = loss.terms(to_t(sr), to_t(hr))  # the loss recomputes these terms bit for bit (same ops, same inputs)
    expected = t["l1"] + sum(g * t[k] for g, k in zip(got, ("sobel_x", "sobel_y", "laplacian")))
    # Both are float32 l1 + 3 products (λ rounded to float32) summed in different orders: each within gamma(5) of
    # the exact sum of positive terms.
    assert loss(to_t(sr), to_t(hr)).item() == pytest.approx(expected.item(), abs=two_evaluations(expected.item(), 5))
    assert not EdgeGradientLoss().needs_network  # fixed λ never wait for a network


def test_auto_lambdas_official_and_old_names_and_errors():
    class Official(nn.Module):  # the official training-form EDBB names: conv1x1_sbx.scale, shape (C, 1, 1, 1)
        def __init__(self) -> None:
            super().__init__()
            for name, s in (("conv1x1_sbx", 1.0), ("conv1x1_sby", 2.0), ("conv1x1_lpl", 1.0)):
                self.add_module(name, FakeEdgeBranch([s, -s], "scale"))
                getattr(self, name).scale.data = getattr(self, name).scale.data.view(2, 1, 1, 1)

    assert EdgeGradientLoss(lambdas="auto").set_lambdas_from_network(Official()) == (0.25, 0.5, 0.25)  # dyadic
    # our names before the `scale` -> `gain` rename (<block>.sobel_x.scale): the same λ as the new names
    assert EdgeGradientLoss(lambdas="auto").set_lambdas_from_network(fake_net("scale")) == EXPECTED  # dyadic: exact
    with pytest.raises(ValueError, match="no edge-branch gain"):  # a deploy-form net has no branch gains
        EdgeGradientLoss(lambdas="auto").set_lambdas_from_network(nn.Conv2d(3, 3, 3))
    with pytest.raises(ValueError, match="no edge-branch gain"):  # a branch's other parameters are not gains
        EdgeGradientLoss(lambdas="auto").set_lambdas_from_network(fake_net("weight"))
    custom = EdgeGradientLoss(lambdas="auto", gain_suffixes=("a.s", "b.s", "c.s"))
    net = nn.ModuleDict(
        {k: nn.ParameterDict({"s": nn.Parameter(torch.tensor([v]))}) for k, v in zip("abc", (1.0, 1.0, 2.0))}
    )
    assert custom.set_lambdas_from_network(net) == (0.25, 0.25, 0.5)  # dyadic: exact
    with pytest.raises(ValueError, match="gain_suffixes needs 3 entries"):
        EdgeGradientLoss(lambdas="auto", gain_suffixes=("a.s", "b.s"))
    with pytest.raises(ValueError, match="three floats or 'auto'"):
        EdgeGradientLoss(lambdas="manual")
    with pytest.raises(ValueError, match="3 values"):
        EdgeGradientLoss(lambdas=(1.0, 2.0))


def test_auto_lambdas_from_gains_of_a_state_dict():
    # A state dict (e.g. of a file saved before the rename, <block>.sobel_x.scale) through collect_edge_gains.
    loss = EdgeGradientLoss(lambdas="auto", auto_factor=2.0)
    assert loss.set_lambdas_from_gains(*collect_edge_gains(fake_net("scale").state_dict())) == tuple(
        2.0 * v for v in EXPECTED
    )
    assert not loss.needs_network
    assert loss.lambdas.tolist() == [2.0 * v for v in EXPECTED]  # dyadic: exact


def test_auto_lambdas_from_real_edbb():
    edbb = pytest.importorskip("sr_lightning.archs.edbb")
    net = nn.Sequential(edbb.EDBB(4, 4), nn.PReLU(4), edbb.EDBB(4, 4))
    # The real EDBB's branch gains are found by the default suffixes: 2 blocks x 3 branches of 4 channels.
    values = (-0.3, 0.1, 0.2)
    filled = 0
    with torch.no_grad():
        for name, param in net.named_parameters():
            for suffixes, v in zip(DEFAULT_GAIN_SUFFIXES, values):
                if any(name.endswith("." + s) for s in suffixes):
                    param.fill_(v)
                    filled += param.numel()
    assert filled == 2 * 3 * 4
    # 0.3, 0.1, 0.2 are stored in float32 (relative error <= u each); means of equal values and the ratio are
    # float64: within gamma(3) (float32) of the exact ratios
    got = EdgeGradientLoss(lambdas="auto").set_lambdas_from_network(net)
    assert got == pytest.approx((0.5, 1 / 6, 1 / 3), rel=gamma(3))


def test_lambdas_persist_in_state_dict():
    trained = EdgeGradientLoss(lambdas="auto")
    trained.set_lambdas_from_network(fake_net())
    sd = trained.state_dict()
    assert list(sd) == ["lambdas"]  # the filter bank is a non-persistent buffer
    resumed = EdgeGradientLoss(lambdas="auto")
    assert resumed.needs_network
    resumed.load_state_dict(sd)
    assert not resumed.needs_network  # a resumed run keeps its λ; the module need not look at the network again
    assert resumed.lambdas.tolist() == list(EXPECTED)  # dyadic: exact
    fixed = EdgeGradientLoss(lambdas=[0.1, 0.2, 0.3])
    assert EdgeGradientLoss().load_state_dict(fixed.state_dict()) is not None
    assert fixed.state_dict()["lambdas"].tolist() == pytest.approx([0.1, 0.2, 0.3], rel=unit_roundoff())  # float32


def test_yaml_configs(tmp_path):
    from compose import compose_cfg

    cfg = compose_cfg("train", ["loss=eg"], tmp_path)
    loss = instantiate(cfg.loss)
    assert isinstance(loss, EdgeGradientLoss) and loss.gv.patch_size == 8
    assert loss.lambdas.tolist() == pytest.approx([1e-3] * 3, rel=unit_roundoff()) and not loss.needs_network
    auto = instantiate(compose_cfg("train", ["loss=eg", "loss.lambdas=auto"], tmp_path).loss)
    assert auto.needs_network
    gv = instantiate(compose_cfg("train", ["loss=gv", "loss.patch_size=4"], tmp_path).loss)
    assert isinstance(gv, GradientVarianceLoss) and gv.filters == ("sobel_x", "sobel_y") and gv.patch_size == 4
