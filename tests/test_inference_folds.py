"""Inference-time folds (archs/linear_folds.py, archs/efdn/fast.py, archs/fdiwn/fast*.py, archs/optimize.py): each
fold equals what it replaces in real arithmetic, so in float64 the two agree within rounding.

Linear folds are bounded per reduction (tests/_tolerance.py: two evaluations of an n-term sum with the sum of |terms|
taken from the all-absolute-values copy). Folds of nonlinear blocks use the whole-network bound (``network_tolerance``:
amplification 1e6 of the unit roundoff, ~2e-10 relative in float64). Float32 errors against the float64 truth are
printed beside the unfolded network's own (``-s``).
"""

from __future__ import annotations

import copy

import pytest
import torch
from _tolerance import abs_copy, assert_within, network_tolerance, two_evaluations
from torch import nn

from sr_lightning.archs.efdn import EFDN
from sr_lightning.archs.efdn.fast import FastEFDB, FastESA, fold_distill_fuse, fold_efdn, fold_reduce_skip
from sr_lightning.archs.fdiwn import FDIWN
from sr_lightning.archs.fdiwn.attention import channel_shuffle
from sr_lightning.archs.fdiwn.fast import FastFSWG, FastSCF, FastWDIB, fold_ends, fold_fdiwn
from sr_lightning.archs.fdiwn.fast_units import FastCombinationCoefficient, FastShuffleAttention, FastWideUnit
from sr_lightning.archs.forms import to_deploy_form
from sr_lightning.archs.linear_folds import (
    composed_1x1,
    permuted_conv,
    scaled_conv,
    shuffle_permutation,
    shuffled_cat,
    split_input_conv,
    stacked_conv,
)
from sr_lightning.archs.optimize import is_optimized, optimize_for_inference, refuse_optimized
from sr_lightning.exporters.official import export_official
from sr_lightning.exporters.safetensors import export_safetensors
from sr_lightning.inference.loading import load_model
from sr_lightning.weights import save_weights

F64 = torch.float64


def conv(cin: int, cout: int, k: int = 1, **kw) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, **kw).to(F64).eval()


def x64(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=F64)


def linear_bound(module: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """Two evaluations of `module` (a linear composite with n terms per output) on x: the per-element bound."""
    with torch.no_grad():
        return two_evaluations(abs_copy(module)(x.abs()), n, F64)


# -- linear algebra of convs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("groups", [1, 2])
def test_scaled_conv_out_and_in(groups: int) -> None:
    torch.manual_seed(0)
    c = conv(4, 6, 3, groups=groups)
    x = x64(2, 4, 9, 7)
    out_s = torch.randn(6, dtype=F64)
    with torch.no_grad():
        want = c(x) * out_s.view(1, -1, 1, 1)
        assert_within(scaled_conv(c, out_scale=out_s)(x), want, 2 * linear_bound(c, x, 37) * out_s.abs().max())
        want = -0.7 * c(1.3 * x)
        assert_within(scaled_conv(c, out_scale=-0.7, in_scale=1.3)(x), want, 2 * linear_bound(c, x, 37) * 1.3)
    if groups == 1:
        in_s = torch.randn(4, dtype=F64)
        with torch.no_grad():
            want = c(x * in_s.view(1, -1, 1, 1))
            assert_within(scaled_conv(c, in_scale=in_s)(x), want, linear_bound(c, x, 37) * in_s.abs().max() * 2)
    else:
        with pytest.raises(ValueError, match="ungrouped"):
            scaled_conv(c, in_scale=torch.ones(4, dtype=F64))


def test_permuted_conv_is_exact() -> None:
    torch.manual_seed(1)
    c, x = conv(6, 8, 3), x64(1, 6, 5, 5)
    out_p, in_p = torch.randperm(8), torch.randperm(6)
    with torch.no_grad():
        assert torch.equal(permuted_conv(c, out_perm=out_p)(x), c(x)[:, out_p])
        assert_within(permuted_conv(c, in_perm=in_p)(x[:, in_p]), c(x), linear_bound(c, x, 55))
    with pytest.raises(ValueError, match="groups"):
        permuted_conv(conv(4, 4, 1, groups=2), out_perm=torch.tensor([2, 3, 0, 1]))


def test_stacked_conv_mixes_kernel_sizes() -> None:
    torch.manual_seed(2)
    a, b = conv(5, 3, 3), conv(5, 2, 1)
    x = x64(2, 5, 6, 8)
    with torch.no_grad():
        got, want = stacked_conv([a, b])(x), torch.cat([a(x), b(x)], 1)
    assert_within(got, want, torch.cat([linear_bound(a, x, 46), linear_bound(b, x, 46)], 1))


def test_split_input_conv() -> None:
    torch.manual_seed(5)
    c, parts = conv(7, 4, 3), [x64(1, 3, 6, 5), x64(1, 4, 6, 5)]
    x = torch.cat(parts, 1)
    with torch.no_grad():
        got = sum(p(t) for p, t in zip(split_input_conv(c, [3, 4]), parts))
        assert_within(got, c(x), linear_bound(c, x, 9 * 7 + 3))
    with pytest.raises(ValueError, match="conv of 7 inputs"):
        split_input_conv(c, [3, 3])


@pytest.mark.parametrize("k", [1, 3])
def test_composed_1x1(k: int) -> None:
    torch.manual_seed(3)
    first, second = conv(6, 5, k), conv(5, 4, 1)
    x = x64(1, 6, 7, 9)
    chain = nn.Sequential(first, second)
    with torch.no_grad():
        assert_within(composed_1x1(first, second)(x), chain(x), linear_bound(chain, x, 9 * 6 * 5 + 12))
    with pytest.raises(ValueError, match="1x1"):
        composed_1x1(second, first) if k == 3 else composed_1x1(second, conv(4, 4, 3))


def test_shuffle_permutation_and_shuffled_cat() -> None:
    torch.manual_seed(4)
    a, b = torch.randn(2, 24, 5, 6), torch.randn(2, 24, 5, 6)
    assert torch.equal(channel_shuffle(a, 4), a[:, shuffle_permutation(24, 4)])
    want = channel_shuffle(torch.cat([a, b], 1), 4)
    assert torch.equal(shuffled_cat([a, b], 4), want)
    cl = [t.contiguous(memory_format=torch.channels_last) for t in (a, b)]
    got = shuffled_cat(cl, 4)
    assert torch.equal(got, want) and got.is_contiguous(memory_format=torch.channels_last)
    uneven = [a[:, :6], b[:, :6]]  # 3 groups of 4 channels: not whole groups per input, cat then index
    assert torch.equal(shuffled_cat(uneven, 3), channel_shuffle(torch.cat(uneven, 1), 3))


# -- FDIWN ----------------------------------------------------------------------------------------------------------
def random_fdiwn(scale: int = 2, num_wdib: int = 3, seed: int = 0) -> FDIWN:
    """A deploy-form FDIWN (2 FSWGs) with every parameter random, gains included (one negative), in float64."""
    torch.manual_seed(seed)
    net = FDIWN(scale=scale, num_groups=2, num_wdib=num_wdib).to(F64).eval()
    to_deploy_form(net)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn_like(p) * (0.6 if name.endswith("gain") else 0.15) + (0.5 if "gain" in name else 0))
        net.fswg[0].wdib[0].refine_q.gain_res.gain.fill_(-0.4)  # the sign path of the SA fold
    return net


def compare(original: nn.Module, folded: nn.Module, *inputs: torch.Tensor, what: str) -> None:
    with torch.no_grad():
        want = original(*inputs)
        got = folded(*inputs)
    want, got = (want, got) if isinstance(want, torch.Tensor) else (torch.cat(want, 1), torch.cat(got, 1))
    assert_within(got, want, network_tolerance(want), what)


@pytest.mark.parametrize("gain", [1.0, 0.7, -1.9])
@pytest.mark.parametrize("in_conv", [False, True])
def test_fast_shuffle_attention(gain: float, in_conv: bool) -> None:
    net = random_fdiwn()
    sa = net.fswg[0].wdib[0].attn
    z = x64(2, 24, 9, 11) * 3 + 1
    fast = FastShuffleAttention.from_attention(sa, 24, gain, shuffle_in_conv=in_conv)
    zz = gain * z
    if in_conv:
        zz = zz[:, shuffle_permutation(24, 2)]
    with torch.no_grad():
        want, got = gain * sa(z), fast(zz)
    assert_within(got, want, network_tolerance(want), f"SA gain={gain} shuffle_in_conv={in_conv}")


def test_fast_units_and_blocks() -> None:
    net = random_fdiwn()
    wdib, fswg = net.fswg[0].wdib[1], net.fswg[0]
    x = x64(1, 24, 10, 13)
    wirw, wcrw = wdib.distil1.wirw, wdib.distil1.wcrw
    compare(wirw, FastWideUnit(copy.deepcopy(wirw)), x, what="WIRW")
    compare(lambda t: 0.3 * wirw(t), FastWideUnit(copy.deepcopy(wirw), out_gain=0.3), x, what="WIRW * gain")
    compare(wcrw, FastWideUnit(copy.deepcopy(wcrw)), x[:, :12], what="WCRW")
    compare(wdib.cc1_f, FastCombinationCoefficient(copy.deepcopy(wdib.cc1_f)), x, what="combination coefficient")
    q, p = x64(1, 24, 10, 13), x64(1, 24, 10, 13)
    compare(wdib.scf, lambda a, b: FastSCF(copy.deepcopy(wdib.scf))(torch.cat([a, b], 1), b), q, p, what="SCF")
    compare(wdib, FastWDIB(copy.deepcopy(wdib)), x, what="WDIB")
    compare(fswg, FastFSWG(copy.deepcopy(fswg)), x, what="FSWG")
    one = random_fdiwn(num_wdib=1).fswg[1]  # no fusion conv: lambda_x in the add's alpha
    compare(one, FastFSWG(copy.deepcopy(one)), x, what="FSWG of one WDIB")


@pytest.mark.parametrize("scale", [2, 4])
def test_fold_ends_and_whole_fdiwn(scale: int) -> None:
    net = random_fdiwn(scale)  # x2 feeds the raw image to the second path, x4 the mean-shifted one
    x = torch.rand(1, 3, 12, 10, dtype=F64)
    ends = copy.deepcopy(net)
    fold_ends(ends)
    compare(net, ends, x, what=f"FDIWN x{scale} ends")
    folded = copy.deepcopy(net)
    # per FSWG: 3 WDIBs of 7 units (2 gains each) + SCF's 2, the residual WIRW's 2, its own 2
    assert fold_fdiwn(folded)["gains"] == 2 * (3 * (7 * 2 + 2) + 2 + 2)
    compare(net, folded, x, what=f"FDIWN x{scale}")


# -- EFDN -----------------------------------------------------------------------------------------------------------
def random_efdn(seed: int = 0) -> EFDN:
    torch.manual_seed(seed)
    net = EFDN(scale=2).to(F64).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.15)
    return net


def test_efdn_block_folds() -> None:
    net = random_efdn()
    block = net.blocks[1]
    x = x64(1, 48, 20, 23)
    feats = [x64(1, 48, 20, 23) for _ in range(4)]
    with torch.no_grad():
        want = block.fuse(torch.cat([d(f) for d, f in zip(block.distill, feats)], 1))
        got = sum(e(f) for e, f in zip(fold_distill_fuse(block), feats))
        abs_want = abs_copy(block.fuse)(torch.cat([abs_copy(d)(f.abs()) for d, f in zip(block.distill, feats)], 1))
    assert_within(got, want, two_evaluations(abs_want, 96 * 48 + 100, F64), "distill -> fuse")
    esa = block.esa
    with torch.no_grad():
        both = fold_reduce_skip(esa)(x)
        chain = nn.Sequential(esa.reduce, esa.skip)
        want = torch.cat([esa.reduce(x), chain(x)], 1)
        bound = torch.cat([linear_bound(esa.reduce, x, 50), linear_bound(chain, x, 48 * 12 + 14)], 1)
    assert_within(both, want, bound, "ESA reduce / skip")
    compare(esa, FastESA(copy.deepcopy(esa)), x, what="ESA")
    compare(block, FastEFDB(copy.deepcopy(block)), x, what="EFDB")
    folded = copy.deepcopy(net)
    assert fold_efdn(folded) == {"distill_fuse": 4, "esa_reduce_skip": 4, "pair_fuse": 3}
    compare(net, folded, torch.rand(1, 3, 24, 20, dtype=F64), what="EFDN")


# -- the default path on the official checkpoints ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["efdn_x4_official.pth", "fdiwn_x4_official.pt", "fdiwn_x3_official.pt"])
def test_optimize_for_inference_on_official_weights(name: str, official_weights_dir) -> None:
    """float64: optimized == deploy form within rounding; float32: both forms' error against the float64 truth."""
    deploy = load_model(official_weights_dir / name, optimize=False)
    fast = load_model(official_weights_dir / name)
    assert is_optimized(fast) and not is_optimized(deploy) and type(fast) is type(deploy)
    assert fast.sr_meta == deploy.sr_meta and fast.scale == deploy.scale
    torch.manual_seed(0)
    x = torch.rand(1, 3, 32, 40)
    net64 = copy.deepcopy(deploy).double()
    with torch.no_grad():
        truth = net64(x.double())
        optimize_for_inference(net64)  # folded in float64 (float32 folds round their weights)
        fast64 = net64(x.double())
        err_deploy32 = (deploy(x).double() - truth).abs().max().item()
        err_fast32 = (fast(x).double() - truth).abs().max().item()
    assert_within(fast64, truth, network_tolerance(truth), name)
    print(f"{name}: float64 max|fast - deploy| = {(fast64 - truth).abs().max().item():.3g}; float32 max error vs "
          f"float64: fast {err_fast32:.3g}, deploy {err_deploy32:.3g}")  # fmt: skip
    assert optimize_for_inference(fast) == fast.sr_inference  # idempotent


def test_optimized_networks_write_no_files(official_weights_dir, tmp_path) -> None:
    fast = load_model(official_weights_dir / "efdn_x4_official.pth")
    with pytest.raises(ValueError, match="inference form"):
        save_weights(fast, tmp_path / "w.pth")
    with pytest.raises(ValueError, match="inference form"):
        export_safetensors(fast, tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="inference form"):
        export_official(fast, tmp_path / "w_official.pth")
    with pytest.raises(ValueError, match="inference form"):
        refuse_optimized(fast, "writer")
    assert not list(tmp_path.iterdir())
    save_weights(load_model(official_weights_dir / "efdn_x4_official.pth", optimize=False), tmp_path / "w.pth")


def test_complexity_counts_the_papers_network(official_weights_dir) -> None:
    """The report keeps the paper's counts (deploy form) and labels the folded network's beside them."""
    from sr_lightning.profiling import measure_complexity

    fast = load_model(official_weights_dir / "efdn_x4_official.pth")
    report = measure_complexity(fast, 4, runtime=False)
    deploy = measure_complexity(load_model(official_weights_dir / "efdn_x4_official.pth", optimize=False), 4,
                                runtime=False)  # fmt: skip
    assert report["params"] == deploy["params"] == 276_192 and report["macs_720p"] == deploy["macs_720p"]
    # per block: distill -> fuse as four biased 1x1 convs C -> C (was four C -> C/2 and 2C -> C); ESA's reduce and
    # skip as one 1x1 conv C -> C/2 (was C -> C/4 and C/4 -> C/4)
    distill_fuse = 4 * (48 * 48 + 48) - (4 * (48 * 24 + 24) + 96 * 48 + 48)
    reduce_skip = (48 * 24 + 24) - (48 * 12 + 12 + 12 * 12 + 12)
    assert report["params_inference"] == 276_192 + 4 * (distill_fuse + reduce_skip)
    assert report["macs_720p_inference"] > report["macs_720p"]
