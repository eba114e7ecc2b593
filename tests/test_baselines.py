"""IMDN, RFDN and PAN, the efficient-SR baselines of the EFDN and FDIWN papers: forward shapes at every scale, the
official checkpoints (key conversion both ways, detection, complexity, the reference Set5 / Set14 numbers), and the
re-parameterizable blocks in their plain 3x3 convs (RFDN's shallow residual blocks, IMDN's distillation convs)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from _rep_blocks import abs_terms, n_terms
from _tolerance import REFERENCE_TOLERANCE, assert_within, network_tolerance, two_evaluations
from compose import compose_cfg
from hydra.utils import instantiate
from torch import nn

from sr_lightning.archs.blocks import make_repvgg
from sr_lightning.archs.catalog import architecture_of
from sr_lightning.archs.edbb import EDBB, make_edbb, set_edbb_mode
from sr_lightning.archs.forms import network_form, to_deploy_form
from sr_lightning.archs.imdn import IMDN
from sr_lightning.archs.pan import PAN, upsampling_steps
from sr_lightning.archs.rep_block import RepBlock
from sr_lightning.archs.rfdn import RFDN
from sr_lightning.data.benchmark import BenchmarkDataset
from sr_lightning.inference.detect import detect_model
from sr_lightning.inference.loading import load_model
from sr_lightning.inference.runner import Runner
from sr_lightning.metrics import psnr_y, ssim_y
from sr_lightning.profiling import measure_complexity
from sr_lightning.weights import count_parameters
from sr_lightning.weights_file import read_weights

NETS: dict[str, type[nn.Module]] = {"imdn": IMDN, "rfdn": RFDN, "pan": PAN}
# The released checkpoints (shared/weights/official/README.md): (network, scale) -> parameters.
OFFICIAL = {
    ("imdn", 2): 694_404,
    ("imdn", 3): 703_059,
    ("imdn", 4): 715_176,
    ("pan", 2): 261_403,
    ("pan", 3): 261_403,
    ("pan", 4): 272_419,
    ("rfdn", 4): 433_448,
}
# Official-code Y-PSNR / SSIM (shared/weights/official/README.md), whole-image inference, official LR files.
REFERENCE = {
    ("imdn", 2): {"Set5": (37.9966, 0.9605), "Set14": (33.6321, 0.9177)},
    ("imdn", 3): {"Set5": (34.3624, 0.9270), "Set14": (30.3249, 0.8417)},
    ("imdn", 4): {"Set5": (32.2115, 0.8948), "Set14": (28.5869, 0.7811)},
    ("pan", 2): {"Set5": (38.0024, 0.9605), "Set14": (33.5969, 0.9180)},
    ("pan", 3): {"Set5": (34.4027, 0.9272), "Set14": (30.3580, 0.8422)},
    ("pan", 4): {"Set5": (32.1349, 0.8948), "Set14": (28.6148, 0.7822)},
    ("rfdn", 4): {"Set5": (32.1607, 0.8946), "Set14": (28.6503, 0.7825)},
}
# The official code's figures at x4 (issue 22 section 2): params, FLOPs (multiply-adds) and activations for a 256x256
# LR input, conv calls, MACs for a 1280x720 output.
COMPLEXITY = {  # name: (params, FLOPs G, activations M, conv calls, MACs G)
    "imdn": (715_176, 46.52, 122.68, 46, 40.89),
    "rfdn": (433_448, 27.03, 112.03, 64, 23.76),
    "pan": (272_419, 32.04, 270.53, 121, 28.16),
}


@pytest.fixture
def one_thread():
    """Tiny tensors: OpenMP threads only add overhead (and stall badly on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _file(weights_dir: Path, name: str, scale: int) -> Path:
    return weights_dir / f"{name}_x{scale}_official.pth"


def _shapes(sd: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


# -- networks, no shared data -------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", list(NETS))
def test_forward_shape_at_every_scale(name: str, scale: int, one_thread) -> None:
    net = NETS[name](scale=scale).eval()
    if (name, scale) in OFFICIAL:
        assert count_parameters(net) == OFFICIAL[name, scale]
    h, w = net.min_input_size + 2, net.min_input_size + 5  # odd sizes, RFDN's ESA needs 15 pixels
    with torch.no_grad():
        out = net(torch.rand(2, 3, h, w))
    assert out.shape == (2, 3, h * scale, w * scale) and torch.isfinite(out).all()


def test_pan_upsampling_steps() -> None:
    # official: x2 / x3 one step of the factor, x4 two steps of x2; beyond, our extension
    assert [upsampling_steps(s) for s in (2, 3, 4, 6, 8)] == [(2,), (3,), (2, 2), (6,), (2, 2, 2)]
    assert len(PAN(scale=8).up) == 3 and len(PAN(scale=3).up) == 1
    with pytest.raises(ValueError, match="scale >= 2"):
        PAN(scale=1)


def test_rfdn_works_on_0_255_inside(one_thread) -> None:
    """[0, 1] in and out, the official 0-255 convention inside: the network equals its body run on 255 x, / 255."""
    net = RFDN(scale=2, num_blocks=1).eval()
    x = torch.rand(1, 3, 16, 17)
    seen: list[torch.Tensor] = []
    net.head.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    with torch.no_grad():
        out = net(x)
        inner = RFDN(scale=2, num_blocks=1, rgb_range=1.0)
        inner.load_state_dict(net.state_dict())
        body = inner.eval()(x * 255)
    assert torch.equal(seen[0], x * 255)  # the same op on the same input
    assert torch.equal(out, body / 255)


def test_converters_reject_other_layouts() -> None:
    imdn, rfdn, pan = (architecture_of(cls) for cls in (IMDN, RFDN, PAN))
    official_rfdn = rfdn.to_official(RFDN().state_dict())
    with pytest.raises(ValueError, match="not an official IMDN"):
        imdn.convert_official(official_rfdn)
    with pytest.raises(ValueError, match="not an official PAN"):
        pan.convert_official(imdn.to_official(IMDN().state_dict()))
    with pytest.raises(ValueError, match="not an official RFDN"):
        rfdn.convert_official({**official_rfdn, "B1.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="not an official IMDN"):
        imdn.convert_official({})
    # a training-form network has no official layout: fold it first
    with pytest.raises(ValueError, match="fold the network first"):
        rfdn.to_official(RFDN(conv3x3=make_edbb).state_dict())
    with pytest.raises(ValueError, match="fold the network first"):
        imdn.to_official(IMDN(conv3x3=make_edbb).state_dict())


@pytest.mark.parametrize(("name", "overrides"), [("imdn", ["block=edbb"]), ("rfdn", ["block=edbb"]), ("pan", [])])
@pytest.mark.parametrize("scale", [2, 4])
def test_model_configs_compose(name: str, overrides: list[str], scale: int, tmp_path) -> None:
    cfg = compose_cfg("train", [f"model={name}", f"scale={scale}"], tmp_path)
    net = instantiate(cfg.model)
    assert isinstance(net, NETS[name]) and net.scale == scale and network_form(net) == "deploy"
    if (name, scale) in OFFICIAL:  # the packaged options are the official network's
        assert count_parameters(net) == OFFICIAL[name, scale]
    if overrides:  # block=edbb: EDBBs in place of the plain 3x3 convs (IMDN 4 per IMDB x 6, RFDN 3 SRBs x 4)
        net = instantiate(compose_cfg("train", [f"model={name}", f"scale={scale}", *overrides], tmp_path).model)
        assert sum(isinstance(m, EDBB) for m in net.modules()) == {"imdn": 24, "rfdn": 12}[name]


# -- re-parameterizable blocks in the plain networks ----------------------------------------------------------------
def _randomize_blocks(net: nn.Module, seed: int) -> None:
    """Non-trivial branch parameters on top of the blocks' init (edge gains and biases start at 1e-3)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in (m for m in net.modules() if isinstance(m, RepBlock)):
            for pname, p in block.named_parameters():
                scale = 0.1 if pname.endswith(("gain", "bias")) else 0.02
                p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)


def _fold_and_compare(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Fold ``net`` (online EDBBs, float64) in place; check every block branch by branch against its online output
    on the activations it really sees, and the folded network against the online one; return the folded output."""
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.__setitem__(mod, (inp[0], out)))
             for m in net.modules() if isinstance(m, RepBlock)]  # fmt: skip
    with torch.no_grad():
        online = net(x)
        for hook in hooks:
            hook.remove()
        set_edbb_mode(net, "branch")
        branch = net(x)
        # Per block, branch sums and the merged kernel are two evaluations of one multilinear map: within
        # 2 gamma(n) sum|terms| (tests/_tolerance.py), in float64.
        for block, (inp, out) in seen.items():
            assert_within(block(inp), out, two_evaluations(abs_terms(block, inp), n_terms(block), x.dtype), "block")
        to_deploy_form(net)
        deployed = net(x)
    # Exact: the online block convolves with merged_kernel_bias(), the very tensors the fold copies into the plain
    # conv, through the same conv2d call; every other layer is shared.
    assert torch.equal(deployed, online)
    # Whole network, branch by branch vs folded: nonlinear between the blocks, so the float64 network allowance.
    assert_within(branch, deployed, network_tolerance(deployed), "branch-by-branch network vs folded")
    return deployed


@pytest.mark.shared
def test_rfdn_edbb_folds_to_the_official_layout(one_thread, official_weights_dir) -> None:
    """model=rfdn block=edbb: EDBBs in the 12 SRB convs; folded, the official RFDN's state dict, key for key."""
    net = RFDN(scale=4, conv3x3=functools.partial(make_edbb, mode="online")).double().eval()
    _randomize_blocks(net, seed=0)
    arch = architecture_of(RFDN)
    detected = arch.config_from_state_dict(net.state_dict())  # the training form reads back as an EDBB config
    assert detected["conv3x3"]["_target_"] == "sr_lightning.archs.edbb.make_edbb" and detected["scale"] == 4
    torch.manual_seed(1)
    out = _fold_and_compare(net, torch.rand(1, 3, 20, 23, dtype=torch.float64))
    assert out.abs().max() > 0.1
    official = torch.load(_file(official_weights_dir, "rfdn", 4), map_location="cpu", weights_only=True)
    folded = arch.to_official(net.state_dict())
    assert list(folded) == list(official) and _shapes(folded) == _shapes(official)
    assert count_parameters(net) == OFFICIAL["rfdn", 4]


def test_imdn_blocks_drop_the_identity_where_widths_change(one_thread) -> None:
    """IMDN's distillation convs: conv1 (64 -> 64) keeps the EDBB identity, conv2-4 (48 -> 64, 48 -> 16) have none
    (as RepVGG); folded, the plain IMDN, with the same function."""
    net = IMDN(scale=2, num_blocks=2, conv3x3=functools.partial(make_edbb, mode="online")).double().eval()
    block = net.blocks[0]
    assert "identity" in block.conv1.branch_names
    assert [len(b.branch_names) for b in (block.conv2, block.conv3, block.conv4)] == [6, 6, 6]
    assert all("identity" not in b.branch_names for b in (block.conv2, block.conv3, block.conv4))
    assert (block.conv2.in_channels, block.conv2.out_channels, block.conv4.out_channels) == (48, 64, 16)
    _randomize_blocks(net, seed=2)
    torch.manual_seed(3)
    _fold_and_compare(net, torch.rand(1, 3, 12, 13, dtype=torch.float64))
    assert _shapes(net.state_dict()) == _shapes(IMDN(scale=2, num_blocks=2).state_dict())
    # RepVGG drops it the same way (its own rule), so any block with an identity branch fits the IMDB
    repvgg = IMDN(scale=2, num_blocks=1, conv3x3=make_repvgg)
    assert "identity" in repvgg.blocks[0].conv1.branch_names and "identity" not in repvgg.blocks[0].conv2.branch_names


# -- the official checkpoints ---------------------------------------------------------------------------------------
@pytest.mark.shared
@pytest.mark.parametrize(("name", "scale"), list(OFFICIAL))
def test_official_keys_round_trip(name: str, scale: int, official_weights_dir) -> None:
    """official -> ours (loaded strictly into the network) -> official: the same keys in the same order, equal
    tensors."""
    path = _file(official_weights_dir, name, scale)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    official = read_weights(path).state_dict  # IMDN's "module." prefix stripped
    if name == "imdn":
        assert len(raw) == 92 and all(k.startswith("module.") for k in raw)
    assert list(official) == [k.removeprefix("module.") for k in raw]
    arch = architecture_of(NETS[name])
    net = NETS[name](scale=scale)
    net.load_state_dict(arch.convert_official(official), strict=True)
    assert count_parameters(net) == OFFICIAL[name, scale] == sum(v.numel() for v in raw.values())
    back = arch.to_official(net.state_dict())
    assert list(back) == list(official)
    for key, value in official.items():
        assert torch.equal(back[key], value), key


@pytest.mark.shared
@pytest.mark.parametrize(("name", "scale"), list(OFFICIAL))
def test_official_files_are_detected(name: str, scale: int, official_weights_dir) -> None:
    path = _file(official_weights_dir, name, scale)
    if name == "pan" and scale in (2, 3):  # identical shapes at x2 and x3: the scale must be given
        with pytest.raises(ValueError, match=r"does not say its scale; pass scale=<s>"):
            detect_model(path)
        detected = detect_model(path, scale=scale)
    else:
        detected = detect_model(path)
        with pytest.raises(ValueError, match="contradicts"):
            detect_model(path, scale=scale + 1)
    assert (detected.name, detected.scale, detected.source, detected.kind) == (
        NETS[name].__name__,
        scale,
        "shapes",
        "official",
    )
    assert detected.config.get("conv3x3") is None  # the plain (official, deploy) form
    assert count_parameters(load_model(path, scale=scale)) == OFFICIAL[name, scale]


@pytest.mark.shared
@pytest.mark.parametrize("name", list(COMPLEXITY))
def test_official_x4_complexity(name: str, official_weights_dir) -> None:
    """The official code's figures (counts on the meta device: no image is run)."""
    report = measure_complexity(load_model(_file(official_weights_dir, name, 4)), 4, runtime=False)
    measured = (
        report["params"],
        round(report["flops_256"] / 1e9, 2),
        round(report["activations_256"] / 1e6, 2),
        report["conv_calls_256"],
        round(report["macs_720p"] / 1e9, 2),
    )
    assert measured == COMPLEXITY[name]


@pytest.fixture(scope="module")
def benchmark_images(benchmark_dir) -> Callable[[str, int], list[dict]]:
    """Decoded (LR, HR) pairs of a set at a scale, read once per module (three networks share x4)."""
    cache: dict[tuple[str, int], list[dict]] = {}

    def get(name: str, scale: int) -> list[dict]:
        if (name, scale) not in cache:
            ds = BenchmarkDataset(benchmark_dir, name, scale, lr="official")
            cache[name, scale] = [ds[i] for i in range(len(ds))]
        return cache[name, scale]

    return get


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize(("name", "scale"), list(REFERENCE))
def test_official_checkpoints_reproduce_the_reference(name: str, scale: int, official_weights_dir, benchmark_images):
    """Set5 / Set14 through the package's own pieces, in-process: `load_model` (detection, `scale=` for PAN x2 / x3),
    the inference `Runner` (float32, channels_last: twice as fast on CPU here) and the protocol metrics."""
    net = load_model(_file(official_weights_dir, name, scale), scale=scale)
    runner = Runner(net, device="cpu", channels_last=True)
    for set_name, (psnr_ref, ssim_ref) in REFERENCE[name, scale].items():
        psnrs, ssims = [], []
        for item in benchmark_images(set_name, scale):
            sr, hr = runner(item["lr"][None]), item["hr"][None]
            psnrs.append(psnr_y(sr, hr, scale).item())
            ssims.append(ssim_y(sr, hr, scale).item())
        psnr, ssim = sum(psnrs) / len(psnrs), sum(ssims) / len(ssims)
        print(f"{name} x{scale} {set_name}: {psnr:.7f} / {ssim:.7f} (reference {psnr_ref:.4f} / {ssim_ref:.4f})")
        assert len(psnrs) == {"Set5": 5, "Set14": 14}[set_name]
        assert abs(psnr - psnr_ref) <= REFERENCE_TOLERANCE, (set_name, psnr)
        assert abs(ssim - ssim_ref) <= REFERENCE_TOLERANCE, (set_name, ssim)
