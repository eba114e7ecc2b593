"""EDBB: exact folding for every branch combination, online == branch-by-branch (outputs and gradients), bias
padding at image borders, branch switches, EFDN wiring, the model config, and the fold on a real image."""

from __future__ import annotations

import copy
import itertools
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from _rep_blocks import abs_terms, assert_online_matches_branch, fold_error, n_terms, randomize
from _tolerance import assert_within, two_evaluations
from compose import compose_cfg
from hydra.utils import instantiate
from PIL import Image
from torch import nn

import sr_lightning.archs.branches as branches
from sr_lightning.archs.catalog import architecture_of
from sr_lightning.archs.edbb import BRANCHES, EDBB, make_edbb, set_edbb_mode
from sr_lightning.archs.efdn import EFDN
from sr_lightning.archs.forms import network_form, reparameterize_model

ALL_COMBOS = [c for r in range(1, len(BRANCHES) + 1) for c in itertools.combinations(BRANCHES, r)]
NO_IDENTITY = [c for c in ALL_COMBOS if "identity" not in c]
EDGE_BRANCHES = ("sobel_x", "sobel_y", "laplacian")
SEQUENTIAL = ("expand", *EDGE_BRANCHES, "avgpool")  # avgpool: the Table 3 variant (conf/block/edbb_avgpool)


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: OpenMP threads only add overhead (and stall badly on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_all_127_combinations_fold_exactly() -> None:
    torch.manual_seed(0)
    cases = [(4, 4, c) for c in ALL_COMBOS] + [(4, 6, c) for c in NO_IDENTITY]
    assert len(ALL_COMBOS) == 127 and len(cases) == 127 + 63
    worst32 = worst64 = 0.0
    for cin, cout, combo in cases:
        block = randomize(EDBB(cin, cout, combo))
        x = torch.randn(2, cin, 13, 17)
        # float64: the fold is exact up to rounding (~1e-12 here; a wrong tap, bias or border term shows as O(1)).
        err64, bound64 = fold_error(copy.deepcopy(block).double(), x.double())
        assert_within(err64, torch.zeros(()), bound64, f"float64 {combo}")
        # float32: outputs reach ~100 with N(0, 1) weights; the same bound with float32's unit roundoff.
        err32, bound32 = fold_error(block, x)
        assert_within(err32, torch.zeros(()), bound32, f"float32 {combo}")
        worst32 = max(worst32, (err32.abs() / bound32).max().item())
        worst64 = max(worst64, (err64.abs() / bound64).max().item())
    print(f"fold error / rounding bound over {len(cases)} cases: float64 {worst64:.2e}, float32 {worst32:.2e}")


def test_float32_fold_within_rounding_for_unit_scale_weights() -> None:
    # (was "within 1e-5": an observed figure, not a guarantee; the worst-case rounding bound here is ~7e-4)
    torch.manual_seed(1)
    block = randomize(EDBB(4, 4), std=0.3)
    err, bound = fold_error(block, torch.randn(2, 4, 13, 17))
    assert_within(err, torch.zeros(()), bound, "fold")


@pytest.mark.parametrize(("cin", "cout", "branches"), [(4, 4, BRANCHES), (3, 5, BRANCHES[:2] + BRANCHES[3:])])
def test_online_equals_branch_outputs_and_gradients(cin: int, cout: int, branches: tuple[str, ...]) -> None:
    torch.manual_seed(2)
    online = randomize(EDBB(cin, cout, branches, mode="online"), std=0.5)
    assert_online_matches_branch(online, torch.randn(2, cin, 13, 17), torch.randn(2, cout, 13, 17))


@pytest.mark.parametrize("branch", SEQUENTIAL)
def test_sequential_branch_alone_exact_at_borders(branch: str) -> None:
    torch.manual_seed(3)
    block = randomize(EDBB(4, 4, [branch])).double()  # float64: "exact" means float64 rounding here
    x = torch.randn(1, 4, 9, 11, dtype=torch.float64)
    err, bound = fold_error(block, x)
    assert_within(err, torch.zeros(()), bound, "fold")
    # An all-zero image isolates the border terms: inside, every output is the folded bias; on the border the
    # bias-padded 1x1 output makes it the same value. Zero padding would give a different border.
    zeros = torch.zeros(1, 4, 9, 11, dtype=torch.float64)
    block.mode = "branch"
    with torch.no_grad():
        out = block(zeros)
        bias = block.reparameterize().bias.view(1, -1, 1, 1)
    assert_within(out, bias, two_evaluations(abs_terms(block, zeros), n_terms(block), torch.float64), "bias")


@pytest.mark.parametrize("branch", SEQUENTIAL)
def test_zero_padding_would_be_caught(branch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard for the test above: with plain zero padding of the 1x1 output, the fold is wrong at the borders."""
    monkeypatch.setattr(branches, "pad_with_bias", lambda y, bias: nn.functional.pad(y, (1, 1, 1, 1)))
    torch.manual_seed(3)
    block = randomize(EDBB(4, 4, [branch])).double()
    x = torch.randn(1, 4, 9, 11, dtype=torch.float64)
    diff, bound = fold_error(block, x)
    assert_within(diff[..., 1:-1, 1:-1], torch.zeros(()), bound[..., 1:-1, 1:-1], "interior")  # unaffected
    assert (diff.abs() > bound).any()  # the border is not


def test_each_branch_switch_is_honoured() -> None:
    torch.manual_seed(4)
    c, mid = 4, 8
    expected = {
        "conv3x3": c * c * 9 + c,
        "conv1x1": c * c + c,
        "identity": 0,
        "expand": c * mid + mid + mid * c * 9 + c,
    }
    expected |= {edge: c * c + 3 * c for edge in ("sobel_x", "sobel_y", "laplacian")}
    for name, n in expected.items():
        assert _n_params(EDBB(c, c, [name])) == n, name
    full = randomize(EDBB(c, c, mode="branch"))
    assert _n_params(full) == sum(expected.values())
    x = torch.randn(1, c, 13, 17)
    with torch.no_grad():
        ref = full(x)
        # Every branch output is bit-identical in `full` and `reduced` (same parameters, same input): the sums
        # below differ only in the order of adding 7 branch outputs, <= 2 gamma(7) sum |branch outputs|.
        bound = two_evaluations(sum(full.branch(b)(x).abs() for b in BRANCHES), 7)
        for name in BRANCHES:
            rest = [b for b in BRANCHES if b != name]
            reduced = EDBB(c, c, rest, mode="branch")
            reduced.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith(name + ".")})
            assert _n_params(reduced) == _n_params(full) - expected[name]
            assert not hasattr(reduced, name)
            # The missing branch's output is exactly what is missing.
            assert_within(reduced(x) + full.branch(name)(x), ref, bound, name)
            assert ((reduced(x) - ref).abs() > bound).any(), name
    # Canonical branch order whatever the order asked for.
    assert EDBB(c, c, ["laplacian", "conv3x3"]).branch_names == ("conv3x3", "laplacian")


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="identity.*in_channels == out_channels"):
        EDBB(4, 6)
    with pytest.raises(ValueError, match="identity"):
        make_edbb(4, 6, mode="deploy")
    with pytest.raises(ValueError, match="unknown EDBB branch"):
        EDBB(4, 4, ["conv3x3", "sobel"])
    with pytest.raises(ValueError, match="at least one"):
        EDBB(4, 4, [])
    with pytest.raises(ValueError, match="duplicate"):
        EDBB(4, 4, ["conv1x1", "conv1x1"])
    with pytest.raises(ValueError, match="unknown EDBB mode"):
        EDBB(4, 4, mode="fast")
    with pytest.raises(ValueError, match="reparameterize"):
        EDBB(4, 4, mode="deploy")
    with pytest.raises(KeyError, match="not enabled"):
        EDBB(4, 4, ["conv3x3"]).branch("expand")


def test_reparameterize_returns_conv2d_and_factory_modes() -> None:
    block = EDBB(4, 4).train()
    conv = block.reparameterize()
    assert type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
    assert not conv.weight.requires_grad or conv.weight.grad_fn is None
    assert type(make_edbb(4, 4, mode="deploy")) is nn.Conv2d
    assert make_edbb(4, 4, mode="branch").mode == "branch"
    assert make_edbb(4, 4).mode == "online"
    assert EDBB(6, 6, ["expand"], expand_ratio=1.5).expand.conv1x1.out_channels == 9


def _set5_crop(benchmark_dir: Path) -> torch.Tensor:
    lr = np.array(Image.open(benchmark_dir / "Set5/LR_bicubic/X4/butterflyx4.png").convert("RGB"))
    crop = lr[10:39, 5:42]  # 29x37, odd sizes
    return torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255.0


@pytest.mark.shared
def test_efdn_training_form_folds_to_deploy_form(benchmark_dir: Path) -> None:
    torch.manual_seed(5)
    net = EFDN(scale=4, conv3x3=partial(EDBB, mode="online")).eval()
    with torch.no_grad():  # non-trivial EDBB weights on top of the default init
        for block in (m for m in net.modules() if isinstance(m, EDBB)):
            for name, p in block.named_parameters():
                p.add_(torch.randn_like(p) * (0.1 if name.endswith(("gain", "bias")) else 0.02))
    assert network_form(net) == "train"
    x = _set5_crop(benchmark_dir)
    # The input each EDBB sees in the online network, to compare the forms block by block on real activations:
    # between blocks the network is nonlinear, so rounding bounds are derived per block (tests/_tolerance.py).
    seen: dict[EDBB, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: seen.__setitem__(mod, (inp[0], out)))
        for m in net.modules()
        if isinstance(m, EDBB)
    ]
    with torch.no_grad():
        online = net(x)
        for h in hooks:
            h.remove()
        assert set_edbb_mode(net, "branch") == 8
        for block, (inp, out) in seen.items():
            bound = two_evaluations(abs_terms(block, inp), n_terms(block))
            assert_within(block(inp), out, bound, "branch vs online block")
        assert reparameterize_model(net) == 8
        deployed = net(x)
    assert network_form(net) == "deploy" and not net.training
    reference = EFDN(scale=4).state_dict()
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in reference.items()}
    assert list(net.state_dict()) == list(reference)
    assert _n_params(net) == 276_192
    assert online.abs().max() > 0.1
    # Exact: the online EDBB convolves with merged_kernel_bias(), the very tensors reparameterize() copies into the
    # deploy conv, through the same conv2d call; every other layer is shared.
    assert torch.equal(deployed, online)


def test_model_config_defaults_to_online_training_form(tmp_path: Path) -> None:
    cfg = compose_cfg("train", ["model=efdn", "scale=4"], tmp_path)
    net = instantiate(cfg.model)
    blocks = [m for m in net.modules() if isinstance(m, EDBB)]
    assert len(blocks) == 8 and all(b.mode == "online" and b.branch_names == BRANCHES for b in blocks)
    assert sorted(n for n, m in net.named_modules() if isinstance(m, EDBB)) == sorted(
        f"blocks.{i}.conv{j}" for i in range(4) for j in (2, 3)
    )
    assert reparameterize_model(net) == 8
    assert list(net.state_dict()) == list(EFDN(scale=4).state_dict()) and _n_params(net) == 276_192

    branch = instantiate(compose_cfg("train", ["model=efdn", "model.conv3x3.mode=branch"], tmp_path).model)
    assert {b.mode for b in branch.modules() if isinstance(b, EDBB)} == {"branch"}
    five = ["model.conv3x3.branches=[conv3x3,conv1x1,sobel_x,sobel_y,laplacian]"]
    official5 = instantiate(compose_cfg("train", ["model=efdn", *five], tmp_path).model)
    assert official5.blocks[0].conv2.branch_names == ("conv3x3", "conv1x1", "sobel_x", "sobel_y", "laplacian")
    for override in ("model.conv3x3=null", "model.conv3x3.mode=deploy"):
        plain = instantiate(compose_cfg("train", ["model=efdn", override], tmp_path).model)
        assert network_form(plain) == "deploy" and _n_params(plain) == 276_192, override


@pytest.mark.shared
def test_official_deploy_weights_load_into_folded_default_model(
    official_weights_dir: Path, benchmark_dir: Path, tmp_path: Path
) -> None:
    sd = architecture_of(EFDN).convert_official(
        torch.load(official_weights_dir / "efdn_x4_official.pth", weights_only=True)
    )
    net = instantiate(compose_cfg("train", ["model=efdn", "scale=4"], tmp_path).model).eval()
    reparameterize_model(net)
    net.load_state_dict(sd, strict=True)
    plain = EFDN(scale=4).eval()
    plain.load_state_dict(sd, strict=True)
    x = _set5_crop(benchmark_dir)
    with torch.no_grad():
        assert torch.equal(net(x), plain(x))
