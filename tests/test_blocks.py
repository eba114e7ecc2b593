"""The `block` config group (EFDN Table 3 as configs): RepVGG, DBB, ECB, EDBB and EDBB's Table 3 variants as
interchangeable `conv3x3` factories. Per block: every branch combination folds exactly (float64 and float32, within
the rounding bound of tests/_tolerance.py), image borders equal the folded conv, online == branch by branch; per
option: `model=efdn block=<option>` composes, builds EFDN and folds with identical outputs.

`pytest -s tests/test_blocks.py` prints the fold-error table (max |branch - folded| per block)."""

from __future__ import annotations

import copy
import inspect
import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from _rep_blocks import abs_terms, assert_online_matches_branch, fold_error, n_terms, randomize
from _tolerance import assert_within, two_evaluations
from compose import compose_cfg, group_options
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf
from torch import nn

import sr_lightning.archs.branches as branches
from sr_lightning.archs.blocks import DBB_BRANCHES, ECB_BRANCHES, REPVGG_BRANCHES, make_dbb, make_ecb, make_repvgg
from sr_lightning.archs.edbb import BRANCHES, EDBB, make_edbb
from sr_lightning.archs.efdn import EFDN
from sr_lightning.archs.forms import network_form, reparameterize_model
from sr_lightning.archs.rep_block import CATALOGUE, RepBlock, set_block_mode

SEQUENTIAL = {"expand", "sobel_x", "sobel_y", "laplacian", "avgpool"}  # 1x1 first: bias padding matters
#: option -> (block class, branches at in == out); None: the plain conv.
EXPECTED: dict[str, tuple[type[RepBlock], tuple[str, ...]] | None] = {
    "plain": None,
    "repvgg": (RepBlock, REPVGG_BRANCHES),
    "dbb": (RepBlock, DBB_BRANCHES),
    "ecb": (RepBlock, ECB_BRANCHES),
    "edbb": (EDBB, BRANCHES),
    "edbb_no_conv1x1": (EDBB, tuple(b for b in BRANCHES if b != "conv1x1")),
    "edbb_no_identity": (EDBB, tuple(b for b in BRANCHES if b != "identity")),
    "edbb_avgpool": (EDBB, ("conv3x3", "conv1x1", "identity", "expand", "avgpool")),
}
BLOCKS = [o for o, e in EXPECTED.items() if e is not None]
# Every block option, plus ECB with ECBSR's optional identity (with_idt).
CASES = [pytest.param(o, {}, id=o) for o in BLOCKS] + [pytest.param("ecb", {"with_idt": True}, id="ecb+with_idt")]
SMALL_EFDN = ["model=efdn", "scale=2", "model.channels=8", "model.esa_channels=2", "model.num_blocks=3"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These tensors are tiny: OpenMP threads only add overhead (and stall badly on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def factories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Callable[..., nn.Module] | None]:
    """Each `block` option's `model.conv3x3`, composed through conf/train.yaml as `train model=efdn block=<o>`."""
    out = tmp_path_factory.mktemp("compose")
    return {o: instantiate(compose_cfg("train", ["model=efdn", f"block={o}"], out).model.conv3x3) for o in EXPECTED}


@pytest.fixture(scope="module")
def fold_table() -> Iterator[list[str]]:
    rows: list[str] = []
    yield rows
    print("\nfold error |branch - folded| over every branch combination (N(0,1) weights, x ~ N(0,1), 2x4x13x17)")
    print(f"{'block':<18}{'cases':>6}{'max abs f64':>14}{'max abs f32':>14}{'err/bound f64':>15}{'err/bound f32':>15}")
    print("\n".join(rows))


def _factory(factories: dict, option: str, kwargs: dict[str, Any]) -> Callable[..., nn.Module]:
    factory = factories[option]
    return lambda cin, cout: factory(cin, cout, **kwargs)


def test_block_options_are_the_table_3_blocks(factories: dict) -> None:
    assert sorted(group_options("block")) == sorted(EXPECTED)
    assert factories["plain"] is None
    for option in BLOCKS:
        cls, branches = EXPECTED[option]
        block = factories[option](4, 4)
        assert type(block) is cls and block.branch_names == branches and block.mode == "online", option


@pytest.mark.parametrize(("option", "kwargs"), CASES)
def test_every_branch_combination_folds_exactly(
    option: str, kwargs: dict[str, Any], factories: dict, fold_table: list[str]
) -> None:
    torch.manual_seed(0)
    proto = _factory(factories, option, kwargs)(4, 4)
    names = proto.branch_names
    combos = [c for r in range(1, len(names) + 1) for c in itertools.combinations(names, r)]
    cases = [(4, 4, c) for c in combos] + [(4, 6, c) for c in combos if "identity" not in c]
    err = {torch.float64: 0.0, torch.float32: 0.0}
    ratio = dict(err)
    for cin, cout, combo in cases:
        block = randomize(type(proto)(cin, cout, combo, expand_ratio=proto.expand_ratio))
        x = torch.randn(2, cin, 13, 17)
        # float64: exact up to rounding (~1e-13 here; a wrong tap, bias or border term shows as O(1)); float32: the
        # same bound with float32's unit roundoff.
        for dtype in (torch.float64, torch.float32):
            diff, bound = fold_error(copy.deepcopy(block).to(dtype), x.to(dtype))
            assert_within(diff, torch.zeros(()), bound, f"{dtype} {combo} {cin}->{cout}")
            err[dtype] = max(err[dtype], diff.abs().max().item())
            ratio[dtype] = max(ratio[dtype], (diff.abs() / bound).max().item())
    name = option + ("+with_idt" if kwargs else "")
    f64, f32 = torch.float64, torch.float32
    fold_table.append(
        f"{name:<18}{len(cases):>6}{err[f64]:>14.2e}{err[f32]:>14.2e}{ratio[f64]:>15.2e}{ratio[f32]:>15.2e}"
    )


@pytest.mark.parametrize(("option", "kwargs"), CASES)
def test_online_equals_branch_outputs_and_gradients(option: str, kwargs: dict[str, Any], factories: dict) -> None:
    torch.manual_seed(2)
    make = _factory(factories, option, kwargs)
    online = randomize(make(4, 4), std=0.5)
    assert_online_matches_branch(online, torch.randn(2, 4, 13, 17), torch.randn(2, 4, 13, 17))
    # in != out: the same branches less the identity
    rest = [b for b in online.branch_names if b != "identity"]
    online = randomize(type(online)(3, 5, rest, expand_ratio=online.expand_ratio), std=0.5)
    assert_online_matches_branch(online, torch.randn(2, 3, 13, 17), torch.randn(2, 5, 13, 17))


def _border(t: torch.Tensor) -> torch.Tensor:
    """The one-pixel image border of an (N, C, H, W) tensor, flattened."""
    mask = torch.ones(t.shape[-2:], dtype=torch.bool)
    mask[1:-1, 1:-1] = False
    return t[..., mask]


@pytest.mark.parametrize(("option", "kwargs"), CASES)
def test_border_equals_folded_conv(
    option: str, kwargs: dict[str, Any], factories: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(3)
    block = randomize(_factory(factories, option, kwargs)(4, 4)).double()  # "exact" = float64 rounding
    x = torch.randn(1, 4, 9, 11, dtype=torch.float64)
    diff, bound = fold_error(block, x)
    assert_within(_border(diff), torch.zeros(()), _border(bound), "border")
    # An all-zero image isolates the border terms: every output is the folded bias, the border included.
    zeros = torch.zeros(1, 4, 9, 11, dtype=torch.float64)
    with torch.no_grad():
        out = block(zeros)
        bias = block.reparameterize().bias.view(1, -1, 1, 1)
    assert_within(out, bias, two_evaluations(abs_terms(block, zeros), n_terms(block), torch.float64), "bias")
    # Guard: zero padding of the 1x1 outputs (instead of their bias) breaks the border of every block with a
    # 1x1-first branch and nothing else; blocks without one (RepVGG) do not pad at all.
    monkeypatch.setattr(branches, "pad_with_bias", lambda y, b: nn.functional.pad(y, (1, 1, 1, 1)))
    diff, bound = fold_error(block, x)
    assert_within(diff[..., 1:-1, 1:-1], torch.zeros(()), bound[..., 1:-1, 1:-1], "interior")
    assert bool((diff.abs() > bound).any()) == bool(SEQUENTIAL & set(block.branch_names)), option


@pytest.mark.parametrize("option", list(EXPECTED))
def test_block_option_builds_efdn_that_folds_identically(option: str, tmp_path: Path) -> None:
    torch.manual_seed(4)
    net = instantiate(compose_cfg("train", [*SMALL_EFDN, f"block={option}"], tmp_path).model).eval()
    blocks = {n: m for n, m in net.named_modules() if isinstance(m, RepBlock)}
    if EXPECTED[option] is None:
        assert not blocks and network_form(net) == "deploy"
    else:
        cls, branches = EXPECTED[option]
        assert sorted(blocks) == [f"blocks.{i}.conv{j}" for i in range(3) for j in (2, 3)]
        assert all(type(b) is cls and b.branch_names == branches and b.mode == "online" for b in blocks.values())
    with torch.no_grad():  # non-trivial block weights on top of the default init
        for block in blocks.values():
            for p in block.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        x = torch.rand(1, 3, 16, 16)
        online = net(x)
        assert reparameterize_model(net) == len(blocks)
        deployed = net(x)
    assert network_form(net) == "deploy"
    plain = EFDN(scale=2, channels=8, esa_channels=2, num_blocks=3)
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    assert list(net.state_dict()) == list(plain.state_dict())
    assert online.abs().max() > 0.1
    # Exact: the online block convolves with merged_kernel_bias(), the very tensors reparameterize() copies into the
    # deploy conv, through the same conv2d call; every other layer is shared.
    assert torch.equal(deployed, online)


def test_no_block_keeps_the_model_conv3x3_and_block_edbb_is_that_block(tmp_path: Path) -> None:
    default = compose_cfg("train", ["model=efdn"], tmp_path)
    assert OmegaConf.to_container(default.model.conv3x3) == OmegaConf.to_container(
        OmegaConf.load(Path(__file__).parents[1] / "conf/model/efdn.yaml").conv3x3
    )
    edbb = compose_cfg("train", ["model=efdn", "block=edbb"], tmp_path)
    assert OmegaConf.to_container(edbb.model) == OmegaConf.to_container(default.model)
    # command-line keys still apply on top of a block option
    ecb = compose_cfg("train", ["model=efdn", "block=ecb", "model.conv3x3.mode=branch"], tmp_path)
    assert {b.mode for b in instantiate(ecb.model).modules() if isinstance(b, RepBlock)} == {"branch"}


@pytest.mark.parametrize("option", BLOCKS)
def test_block_option_keys_are_factory_arguments(option: str, tmp_path: Path) -> None:
    node = OmegaConf.to_container(compose_cfg("train", ["model=efdn", f"block={option}"], tmp_path).model.conv3x3)
    params = inspect.signature(get_object(node["_target_"])).parameters
    assert set(node) - {"_target_", "_partial_"} <= set(params), option


def test_readme_lists_every_block_option() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    row = next((line for line in readme.splitlines() if line.startswith("| `block` |")), None)
    assert row, "README has no Config groups row for block"
    named = set(re.findall(r"`([a-z0-9_]+)`", row.split("|")[2]))
    assert named == set(EXPECTED)


def test_factories_follow_their_papers() -> None:
    # RepVGG: identity only where in == out; ECBSR: with_idt only where in == out.
    assert make_repvgg(4, 6).branch_names == ("conv3x3", "conv1x1")
    assert set(make_ecb(4, 4, with_idt=True).branch_names) == {"identity", *ECB_BRANCHES}
    assert make_ecb(4, 6, with_idt=True).branch_names == ECB_BRANCHES
    # expand widths: DBB's default = out (= in when in == out), ECB's 2 x out
    assert make_dbb(4, 6).expand.conv1x1.out_channels == 6
    assert make_ecb(4, 6).expand.conv1x1.out_channels == 12
    c = 4
    n_dbb = (c * c * 9 + c) + (c * c + c) + (c * c + c + c * c * 9 + c) + (c * c + 3 * c)
    assert sum(p.numel() for p in make_dbb(c, c).parameters()) == n_dbb
    for make in (make_repvgg, make_dbb, make_ecb, make_edbb):
        conv = make(4, 4, mode="deploy")
        assert type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
        assert make(4, 4, mode="branch").mode == "branch"
    net = nn.Sequential(make_repvgg(4, 4), make_ecb(4, 4), make_edbb(4, 4))
    assert set_block_mode(net, "branch") == 3 and {m.mode for m in net} == {"branch"}


def test_bad_block_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown RepBlock branch"):
        RepBlock(4, 4, ["conv3x3", "sobel"])
    with pytest.raises(ValueError, match="at least one"):
        RepBlock(4, 4, [])
    with pytest.raises(ValueError, match="identity.*in_channels == out_channels"):
        RepBlock(4, 6, ["identity"])
    with pytest.raises(ValueError, match="unknown RepBlock mode"):
        make_repvgg(4, 4, mode="fast")
    with pytest.raises(ValueError, match="unknown fixed filter"):
        branches.ScaledFilterBranch(4, 4, "gauss")
    assert set(CATALOGUE) == {*BRANCHES, "avgpool"}
