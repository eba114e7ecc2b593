"""FDIWN / FDIWN-M: sizes, official checkpoints, weight-norm folding, 0-255 handling, schedules, configs."""

from __future__ import annotations

import pytest
import torch
from _tolerance import assert_within, network_tolerance, two_evaluations
from compose import compose_cfg
from hydra.utils import instantiate
from torch import nn

from sr_lightning.archs.catalog import architecture_of
from sr_lightning.archs.fdiwn import FDIWN, default_schedule
from sr_lightning.archs.forms import fold_weight_norm
from sr_lightning.archs.weight_norm import LEGACY_NAMES, has_weight_norm
from sr_lightning.data.benchmark import BenchmarkDataset
from sr_lightning.metrics.functional import psnr_y
from sr_lightning.ops.imresize import imresize
from sr_lightning.weights import init_weights_from, load_weights


def legacy_weight_norm_key(key: str) -> str:
    """``a.weight_g`` -> ``a.parametrizations.weight.original0`` (``weight_v`` -> ``original1``); others unchanged."""
    prefix, _, leaf = key.rpartition(".")
    if leaf in LEGACY_NAMES:
        return f"{prefix}.{LEGACY_NAMES[leaf]}" if prefix else LEGACY_NAMES[leaf]
    return key


COUNTS = {(2, 3): 629_176, (3, 3): 646_486, (4, 3): 663_848, (3, 2): 446_814, (4, 2): 454_648}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _official(weights_dir, scale: int) -> dict[str, torch.Tensor]:
    return torch.load(weights_dir / f"fdiwn_x{scale}_official.pt", map_location="cpu", weights_only=True)


@pytest.mark.parametrize(("scale", "groups"), list(COUNTS))
def test_parameter_count(scale: int, groups: int) -> None:
    # the official checkpoints' tensor count: weight_g + weight_v, and the 24 mean-shift parameters
    assert _n_params(FDIWN(scale=scale, num_groups=groups)) == COUNTS[scale, groups]


def test_presets_follow_the_official_per_scale_models() -> None:
    x4, x2 = FDIWN(scale=4), FDIWN(scale=2)
    assert x4.expansion == {"wirw": 2.5, "wcrw": 4.5, "scf": 2.25} and x4.up_widths == (32, 32)
    assert x2.expansion == {"wirw": 2.0, "wcrw": 4.0, "scf": 2.0} and x2.up_widths == (64, 64)
    assert (x4.up2_input, x2.up2_input, FDIWN(scale=3).up2_input) == ("mean_sub", "raw", "raw")
    unit = x4.fswg[0].wdib[0].distil1
    assert unit.wirw.expand.parametrizations.weight.original1.shape == (60, 24, 1, 1)  # 24 * 5/2
    assert unit.wcrw.expand.parametrizations.weight.original1.shape == (54, 12, 1, 1)  # 12 * 9/2
    # explicit values win over the preset; another scale's preset can be chosen
    net = FDIWN(scale=2, expansion={"wirw": 3.0}, up_widths=[16, 8], up2_input="mean_sub")
    assert net.expansion == {"wirw": 3.0, "wcrw": 4.0, "scf": 2.0}
    assert net.up1[0].out_channels == 16 and net.up2[0].out_channels == 8 and net.up2_input == "mean_sub"
    assert FDIWN(scale=2, preset="x4").up_widths == (32, 32)
    with pytest.raises(ValueError, match="preset"):
        FDIWN(scale=8)
    FDIWN(scale=8, expansion={"wirw": 2, "wcrw": 4, "scf": 2}, up_widths=(32, 32), up2_input="raw")  # all explicit
    with pytest.raises(ValueError, match="expansion keys"):
        FDIWN(scale=2, expansion={"wide": 2.0})


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_checkpoint_loads_strictly(scale: int, official_weights_dir) -> None:
    sd = _official(official_weights_dir, scale)
    assert len(sd) == 1591 and sum(k.endswith(".weight_g") for k in sd) == 198
    net = FDIWN(scale=scale)
    assert load_weights(net, official_weights_dir / f"fdiwn_x{scale}_official.pt") == "official"
    converted = architecture_of(FDIWN).convert_official(sd)
    for key, value in net.state_dict().items():
        assert torch.equal(value, converted[key]), key
    # the trained (not DIV2K-mean) shifts are loaded
    assert torch.equal(net.sub_mean.bias, sd["Sub_mean.bias"])
    # they differ by 0.003-0.06 from the DIV2K shifts, far beyond float32 rounding of -255 * mean (one rounding of a
    # product below 255: at most 255 * eps32 / 2 ~ 1.5e-5)
    div2k = -255 * torch.tensor([0.4488, 0.4371, 0.4040])
    assert (net.sub_mean.bias - div2k).abs().min() > 255 * torch.finfo(torch.float32).eps


def test_converter_rejects_other_layouts(official_weights_dir) -> None:
    sd = _official(official_weights_dir, 4)
    with pytest.raises(ValueError, match="not an official FDIWN"):
        architecture_of(FDIWN).convert_official({**sd, "Li1.MY1.srb1.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="not an official FDIWN"):
        architecture_of(FDIWN).convert_official({"head.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="not an official FDIWN"):
        architecture_of(FDIWN).convert_official({})
    # the parametrization names (an official model built with the new weight-norm API) map to the same keys
    renamed = {legacy_weight_norm_key(k): v for k, v in sd.items()}
    assert architecture_of(FDIWN).convert_official(renamed).keys() == architecture_of(FDIWN).convert_official(sd).keys()


def test_official_fdiwn_m_layout_mismatch_is_reported(official_weights_dir) -> None:
    with pytest.raises(RuntimeError, match="does not fit FDIWN"):
        load_weights(FDIWN(scale=4, num_groups=2), official_weights_dir / "fdiwn_x4_official.pt")


def test_fold_weight_norm_keeps_outputs() -> None:
    torch.manual_seed(0)
    net = FDIWN(scale=3, num_groups=2, num_wdib=2).eval()
    with torch.no_grad():  # move g away from ||v|| so that folding is not trivially the identity
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        before = net(x)
        n_wn = sum(has_weight_norm(m) for m in net.modules())
        assert fold_weight_norm(net) == n_wn == 2 * (2 * 21 + 3)  # 7 wide units per WDIB, + 1 per FSWG
        after = net(x)
    assert not any(has_weight_norm(m) for m in net.modules()) and fold_weight_norm(net) == 0
    assert not any("parametrizations" in k for k in net.state_dict())
    # Exact: the folded weight is the tensor the parametrization computed (module.weight), so every conv gets
    # bit-identical weights and the same inputs.
    assert torch.equal(after, before)


def test_folded_official_state_dict_loads_into_folded_network(official_weights_dir) -> None:
    sd = _official(official_weights_dir, 2)
    folded_sd = {k: v for k, v in sd.items() if not k.endswith((".weight_g", ".weight_v"))}
    for key in sd:
        if key.endswith(".weight_g"):
            g, v = sd[key], sd[key[: -len("_g")] + "_v"]
            folded_sd[key[: -len("_g")]] = v * (g / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
    ref = FDIWN(scale=2)
    load_weights(ref, official_weights_dir / "fdiwn_x2_official.pt")
    fold_weight_norm(ref)
    net = FDIWN(scale=2)
    fold_weight_norm(net)
    net.load_state_dict(architecture_of(FDIWN).convert_official(folded_sd), strict=True)
    mine = net.state_dict()
    assert len(mine) == 1591 - 198
    normed = {f"{name}.weight" for name, m in FDIWN(scale=2).named_modules() if has_weight_norm(m)}
    assert len(normed) == 198
    for key, value in ref.state_dict().items():
        if key not in normed:
            assert torch.equal(mine[key], value), key  # copied from the same checkpoint tensor
            continue
        # g v / ||v|| twice (here and in torch's weight norm): a norm over the fan-in (n squares summed, a sqrt),
        # a division and a product, <= gamma(n + 4) |w| each.
        n = value[0].numel()
        assert_within(mine[key], value, two_evaluations(value.abs(), n + 4), key)


def test_official_weights_on_a_real_image(official_weights_dir, benchmark_dir) -> None:
    """0-255 handling end to end: the official x4 model on Set5 butterfly (LR 64x64), [0, 1] in and out."""
    net = FDIWN(scale=4).eval()
    load_weights(net, official_weights_dir / "fdiwn_x4_official.pt")
    ds = BenchmarkDataset(benchmark_dir, "Set5", 4, lr="official")
    item = next(ds[i] for i in range(len(ds)) if ds[i]["name"] == "butterfly")
    lr, hr = item["lr"][None], item["hr"][None]
    with torch.no_grad():
        sr = net(lr)
    assert sr.shape == hr.shape and 0.9 < sr.max() < 1.1 and -0.1 < sr.min() < 0.1  # a [0, 1] image, unclamped
    psnr, bicubic = psnr_y(sr, hr, 4).item(), psnr_y(imresize(lr, scale=4), hr, 4).item()
    assert psnr > bicubic + 6  # 28.74 vs 22.10 dB
    # this implementation's value (it reproduces the official Set5/Set14 averages to 1e-4 dB); float rounding only
    # flips the 8-bit quantisation of the rare pixels within ~1e-5 of a rounding tie, ~1e-6 dB, far below 0.01
    assert psnr == pytest.approx(28.7423, abs=0.01)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_odd_sizes_and_batch_independence(scale: int) -> None:
    torch.manual_seed(scale)
    net = FDIWN(scale=scale, num_groups=2, num_wdib=2).eval()
    x = torch.rand(2, 3, 13, 7)
    with torch.no_grad():
        out = net(x)
        other = net(torch.cat([torch.rand(1, 3, 13, 7), x[1:]]))
    assert out.shape == (2, 3, 13 * scale, 7 * scale) and torch.isfinite(out).all()
    # Exact: with the batch size fixed, each image's output depends on its own values only (attention pools per
    # image); changing the other image must not change a single bit.
    assert torch.equal(other[1], out[1]) and not torch.equal(other[0], out[0])
    # Alone vs in a batch of two the conv algorithms may differ, so compare in float64 within rounding.
    net64, x64 = net.double(), x.double()
    with torch.no_grad():
        out64, single64 = net64(x64), net64(x64[1:])
    assert_within(out64[1:], single64, network_tolerance(single64), "alone vs in a batch")


class _Recorder(nn.Module):
    """Stand-in FSWG: records its input, returns input * 0 + a fixed tensor unique to (module, call)."""

    def __init__(self, index: int, log: list[tuple[int, torch.Tensor]]) -> None:
        super().__init__()
        self.index, self.log = index, log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append((self.index, x.clone()))
        return torch.full_like(x, 10.0 ** len(self.log))


@pytest.mark.parametrize(("groups", "schedule"), [(3, (0, 0, 1, 2, 1, 2)), (2, (0, 0, 1, 1))])
def test_schedule_and_global_sum(groups: int, schedule: tuple[int, ...]) -> None:
    net = FDIWN(scale=2, num_groups=groups, num_wdib=2).eval()
    assert net.schedule == schedule == default_schedule(groups)
    log: list[tuple[int, torch.Tensor]] = []
    net.fswg = nn.ModuleList(_Recorder(i, log) for i in range(groups))
    body: list[torch.Tensor] = []
    net.up1.register_forward_hook(lambda m, inp, out: body.append(inp[0]))
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        net(x)
        head = net.head(net.sub_mean(x * 255))
    assert tuple(i for i, _ in log) == schedule
    assert torch.equal(log[0][1], head)  # the first call sees the shallow features (same ops, same input)
    # Exact below: sums of powers of ten up to 1e6 are integers < 2**24, exact in float32 in any order.
    for j in range(1, len(schedule)):  # call j sees the running sum of the previous calls' outputs (not the head)
        assert torch.all(log[j][1] == sum(10.0**k for k in range(1, j + 1)))
    assert torch.all(body[0] == sum(10.0**k for k in range(1, len(schedule) + 1)))


def test_schedule_validation() -> None:
    with pytest.raises(ValueError, match="schedule"):
        FDIWN(scale=2, num_groups=3, schedule=[0, 0, 1, 1])  # third FSWG never called
    with pytest.raises(ValueError, match="schedule"):
        FDIWN(scale=2, num_groups=2, schedule=[0, 2])
    assert FDIWN(scale=2, num_groups=2, schedule=[0, 1, 0, 1]).schedule == (0, 1, 0, 1)


def test_second_path_input() -> None:
    """x4 feeds the mean-subtracted image to the second upsampling path, x2/x3 the raw 0-255 image."""
    seen: dict[str, torch.Tensor] = {}
    x = torch.rand(1, 3, 5, 4)
    for scale in (2, 4):
        net = FDIWN(scale=scale, num_groups=2, num_wdib=2).eval()
        net.up2.register_forward_hook(lambda m, inp, out, s=scale: seen.__setitem__(f"x{s}", inp[0]))
        with torch.no_grad():
            net(x)
            shifted = net.sub_mean(255 * x)
        expected = shifted if scale == 4 else 255 * x
        assert torch.equal(seen[f"x{scale}"], expected)  # the same ops on the same input: bit-identical


def test_upsampler_prefixes_for_scale_changes(official_weights_dir) -> None:
    # x2 weights into an x4 network with the x2/x3 body: only the upsampling convs change shape
    net = FDIWN(scale=4, preset="x2")
    reinit = init_weights_from(net, official_weights_dir / "fdiwn_x2_official.pt")
    assert sorted(reinit) == ["up1.1.bias", "up1.1.weight", "up2.1.bias", "up2.1.weight"]
    assert all(k.startswith(FDIWN.upsampler_prefixes) for k in reinit)


@pytest.mark.parametrize(("model", "scale"), [(m, s) for m in ("fdiwn", "fdiwn_m") for s in (2, 3, 4)])
def test_config_composes(model: str, scale: int, tmp_path) -> None:
    cfg = compose_cfg("train", [f"model={model}", f"scale={scale}"], tmp_path)
    assert cfg.model.scale == scale and cfg.data.scale == scale
    net = instantiate(cfg.model)
    groups = 3 if model == "fdiwn" else 2
    assert isinstance(net, FDIWN) and net.scale == scale and len(net.fswg) == groups
    assert net.schedule == default_schedule(groups)
    if (scale, groups) in COUNTS:
        assert _n_params(net) == COUNTS[scale, groups]
    over = compose_cfg(
        "train",
        [f"model={model}", f"scale={scale}", "model.expansion.wirw=3", "model.up_widths=[16,16]", "model.num_wdib=2"],
        tmp_path,
    )
    net = instantiate(over.model)
    assert net.expansion["wirw"] == 3.0 and net.up_widths == (16, 16) and len(net.fswg[0].wdib) == 2


def test_folding_a_copy_leaves_the_original_intact():
    """Deep copies of parametrized modules share their class; folding the copy must not break the original
    (export and MAC counting fold copies of the network being trained)."""
    import copy

    net = FDIWN(scale=2).eval()
    twin = copy.deepcopy(net)
    assert fold_weight_norm(twin) == 198
    x = torch.rand(1, 3, 16, 18)
    with torch.no_grad():
        # exact: the twin's folded weights are the tensors the original's weight norm computes
        assert torch.equal(twin(x), net(x))
    assert any(k.endswith("original0") for k in net.state_dict())


@pytest.mark.parametrize("num_groups", [1, 2, 3])
def test_every_fig6_depth_builds_and_runs(num_groups):
    """The hparams_search=fdiwn_blocks grid: FSWG calls 2/4/6 (num_groups 1/2/3) x WDIBs 1..4."""
    sizes = []
    for num_wdib in (1, 2, 3, 4):
        net = FDIWN(scale=2, num_groups=num_groups, num_wdib=num_wdib).eval()
        assert len(net.schedule) == 2 * num_groups
        with torch.no_grad():
            assert net(torch.rand(1, 3, 9, 11)).shape == (1, 3, 18, 22)
        sizes.append(sum(p.numel() for p in net.parameters()))
    assert sizes == sorted(set(sizes))  # strictly more parameters with every WDIB
