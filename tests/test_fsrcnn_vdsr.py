"""FSRCNN and VDSR (the EFDN paper's Table 3 frameworks): the papers' counts (Table 4: 12K / 665K, 612.6 G MACs), the
MATLAB-bicubic input layer against `imresize`, EDBB folds to the plain networks, detection from bare state dicts, and
the toolchain through the real entry points (train with the reparam callback, test, upscale, export, complexity)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from _scoring import set_psnr
from compose import compose_cfg
from hydra.utils import instantiate
from PIL import Image
from test_entry_points import TINY_TRAIN, run
from torch import nn

from sr_lightning.archs.edbb import make_edbb, set_edbb_mode
from sr_lightning.archs.forms import to_deploy_form
from sr_lightning.archs.fsrcnn import FSRCNN
from sr_lightning.archs.vdsr import VDSR
from sr_lightning.data.io import load_image
from sr_lightning.exporters.onnx import export_onnx
from sr_lightning.exporters.torchscript import export_torchscript
from sr_lightning.inference.detect import detect_model
from sr_lightning.inference.loading import load_model
from sr_lightning.inference.upscaler import upscale_image
from sr_lightning.ops.bicubic import MatlabBicubicUpsample, phase_weights
from sr_lightning.ops.imresize import imresize
from sr_lightning.ops.pixels import to_float
from sr_lightning.profiling import count_macs
from sr_lightning.profiling.counts import count_convs
from sr_lightning.weights import count_parameters

EPS32, EPS64 = torch.finfo(torch.float32).eps, torch.finfo(torch.float64).eps
HR_PIXELS = 720 * 1280
CONVS = (nn.Conv2d, nn.ConvTranspose2d)
#: the Y-channel networks of the papers: (weights only, + conv biases, all parameters incl. FSRCNN's PReLU slopes)
Y_COUNTS = {"fsrcnn": (12_464, 12_637, 12_809), "vdsr": (664_704, 665_921, 665_921)}
#: RGB, packaged configs: (training form with the seven-branch EDBB, deploy form), at every scale
RGB_COUNTS = {"fsrcnn": (39_131, 24_683), "vdsr": (2_452_675, 668_227)}
NETS = {"fsrcnn": FSRCNN, "vdsr": VDSR}
#: the tiny VDSR of the entry-point tests (the paper's 20 x 64, RGB: 174.9 G MACs for one 256x256 LR input)
TINY_VDSR = ("model=vdsr", "scale=2", "model.channels=8", "model.num_layers=4")


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_single_channel_counts_are_the_papers(name, scale):
    """Table 4's 12K / 665K are the Y-channel models' conv weights alone; the same at every scale."""
    net = NETS[name](scale=scale, in_channels=1, out_channels=1)
    convs = [m for m in net.modules() if isinstance(m, CONVS)]
    weights = sum(m.weight.numel() for m in convs)
    assert (weights, weights + sum(m.bias.numel() for m in convs), count_parameters(net)) == Y_COUNTS[name]


@pytest.mark.parametrize("name", list(NETS))
def test_packaged_config_folds_into_the_plain_network(name, tmp_path):
    """model=<name>: the EDBB training form; folded, it is the plain network (keys, count) and computes the same
    function as the branch-by-branch form (float64)."""
    net = instantiate(compose_cfg("train", [f"model={name}", "scale=3"], tmp_path).model).double()
    assert count_parameters(net) == RGB_COUNTS[name][0]
    x = torch.rand(1, 3, 10, 12, dtype=torch.float64)
    set_edbb_mode(net, "branch")
    with torch.no_grad():
        before = net(x)
    assert to_deploy_form(net)["reparameterized"] == {"fsrcnn": 4, "vdsr": 18}[name]
    with torch.no_grad():
        after = net(x)
    plain = NETS[name](scale=3)
    assert count_parameters(net) == count_parameters(plain) == RGB_COUNTS[name][1]
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    # Branch sums and the merged kernel differ in summation order only: per block output at most 7 * 9 * C products
    # (seven branches) -> within that many float64 roundings of the largest magnitude, summed over the blocks.
    blocks = [m for m in plain.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    terms = sum(7 * 9 * m.in_channels for m in blocks)
    bound = terms * EPS64 * max(before.abs().max().item(), 1.0)
    assert (after - before).abs().max().item() <= bound


def test_vdsr_macs_are_table4s():
    """612.6 G: the Y-channel VDSR's 664,704 weights at every pixel of a 1280x720 output (the bicubic upsampling is
    interpolation, not counted, as with F.interpolate)."""
    for scale in (2, 4):  # 720 and 1280 divide by both: the output is exactly 1280x720
        macs = count_macs(VDSR(scale=scale, in_channels=1, out_channels=1), scale, in_channels=1)
        assert macs == Y_COUNTS["vdsr"][0] * HR_PIXELS and f"{macs / 1e9:.1f}" == "612.6"


def test_fsrcnn_macs_and_table4s_convention():
    """torch counts the 9x9 deconvolution once per LR pixel (its real multiply-adds); Table 4's 4.6 G is the x4
    model with that layer counted at every HR pixel (s^2 times more), the LR-side layers at LR pixels."""
    net = FSRCNN(scale=4, in_channels=1, out_channels=1)
    lr_pixels = (720 // 4) * (1280 // 4)
    counts = count_convs(net, (720 // 4, 1280 // 4), in_channels=1)
    deconv_weights = net.deconv.weight.numel()
    assert counts.macs_by_module["deconv"] == deconv_weights * lr_pixels
    assert counts.macs - counts.macs_by_module["deconv"] == (Y_COUNTS["fsrcnn"][0] - deconv_weights) * lr_pixels
    assert count_macs(net, 4, in_channels=1) == counts.macs
    papers = counts.macs - counts.macs_by_module["deconv"] + deconv_weights * HR_PIXELS
    assert f"{papers / 1e9:.1f}" == "4.6"


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_bicubic_layer_is_matlab_imresize(scale):
    """The layer (float32) against `imresize` (float64), border pixels (replicated taps) and 1-pixel inputs included."""
    # Two passes of at most 5 float32 products and sums (weights rounded to float32 too): each pass within 6 * eps of
    # sum |w| |input|, where sum |w| <= A (the largest row sum of |weights|); the second pass carries the first's
    # error times A: |error| <= 12 * eps * A^2 * max|x|.
    a = max(sum(abs(w) for w in row) for row in phase_weights(scale))
    layer = MatlabBicubicUpsample(scale)
    for shape in [(2, 3, 9, 13), (1, 1, 1, 2), (1, 3, 2, 1)]:
        x = torch.rand(shape, dtype=torch.float64)
        ref = imresize(x, scale=scale)
        out = layer(x.float())
        assert out.shape == ref.shape == (*shape[:2], shape[2] * scale, shape[3] * scale)
        assert (out.double() - ref).abs().max().item() <= 12 * EPS32 * a**2 * x.abs().max().item()


def test_vdsr_adds_its_output_to_the_bicubic_image():
    net = VDSR(scale=3, channels=8, num_layers=3)
    nn.init.zeros_(net.tail.weight)
    nn.init.zeros_(net.tail.bias)
    x = torch.rand(1, 3, 7, 6)
    with torch.no_grad():
        assert torch.equal(net(x), MatlabBicubicUpsample(3)(x))
    with pytest.raises(ValueError, match="in_channels .* must equal out_channels"):
        VDSR(in_channels=1, out_channels=3)


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 5, 8])
def test_fsrcnn_output_is_scale_times_input_at_every_scale(scale):
    net = FSRCNN(scale=scale, feature_channels=8, shrink_channels=4, mapping_layers=1)
    with torch.no_grad():
        assert net(torch.rand(2, 3, 5, 7)).shape == (2, 3, 5 * scale, 7 * scale)


def test_bare_state_dicts_are_detected_given_the_scale(tmp_path):
    """No tensor shape shows the scale of either network: a state dict without our metadata is recognised, and needs
    scale=<s>; with it, detection (deploy form / EDBB training form with its branches) and loading are exact."""
    branches = ["conv3x3", "conv1x1", "identity", "expand"]
    nets = {
        "FSRCNN": FSRCNN(scale=3),
        "VDSR": VDSR(scale=3, channels=8, num_layers=5, conv3x3=functools.partial(make_edbb, branches=branches)),
    }
    x = torch.rand(1, 3, 9, 11)
    for name, net in nets.items():
        path = tmp_path / f"{name}.pth"
        torch.save(net.state_dict(), path)
        with pytest.raises(ValueError, match="does not say its scale; pass scale"):
            detect_model(path)
        found = detect_model(path, scale=3)
        assert (found.name, found.scale, found.source) == (name, 3, "shapes")
        if name == "VDSR":
            assert found.config["conv3x3"]["branches"] == branches and found.config["num_layers"] == 5
        with torch.no_grad():
            assert torch.equal(load_model(path, scale=3, optimize=False)(x), net.eval()(x))


# ---------------------------------------------------------------------------------------------------------------------
# The real entry points, on real data: one tiny training run per network, shared by the tests below.


@pytest.fixture(scope="module")
def fsrcnn_run(tmp_path_factory):
    """FSRCNN x2, EDBB training form folded at fit start by the reparam callback, two steps."""
    run_dir = tmp_path_factory.mktemp("fsrcnn") / "run"
    run("sr_lightning.train", "model=fsrcnn", "scale=2", "callbacks=reparam", *TINY_TRAIN,
        "trainer.limit_val_batches=1", f"hydra.run.dir={run_dir}", cwd=run_dir.parent)  # fmt: skip
    return run_dir


@pytest.fixture(scope="module")
def vdsr_run(tmp_path_factory):
    """A tiny VDSR x2 in the EDBB training form, two steps."""
    run_dir = tmp_path_factory.mktemp("vdsr") / "run"
    run("sr_lightning.train", *TINY_VDSR, *TINY_TRAIN, "trainer.limit_val_batches=1", f"hydra.run.dir={run_dir}",
        cwd=run_dir.parent)  # fmt: skip
    return run_dir


def lr_crop(benchmark_dir, h: int = 37, w: int = 45) -> np.ndarray:
    return load_image(benchmark_dir / "Set5" / "LR_bicubic" / "X2" / "birdx2.png")[:h, :w]


@pytest.mark.slow
@pytest.mark.shared
def test_fsrcnn_trains_folds_and_upscales_from_its_weights_file(fsrcnn_run, benchmark_dir, tmp_path):
    summary = json.loads((fsrcnn_run / "summary.json").read_text())
    assert (summary["num_params_train"], summary["num_params"], summary["steps"]) == (*RGB_COUNTS["fsrcnn"], 2)
    weights = fsrcnn_run / "weights" / "model.pth"
    meta = torch.load(weights, weights_only=True)["meta"]
    assert meta["form"] == "deploy" and meta["scale"] == 2  # folded at fit start: trained as the plain network
    Image.fromarray(lr_crop(benchmark_dir)).save(tmp_path / "bird.png")
    run("sr_lightning.upscale", f"weights={weights}", f"input={tmp_path / 'bird.png'}", f"output={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'up'}", cwd=tmp_path)  # fmt: skip
    out = np.asarray(Image.open(tmp_path / "out" / "bird_x2.png"))
    assert out.shape == (74, 90, 3)
    assert np.array_equal(out, upscale_image(load_model(weights), lr_crop(benchmark_dir)))


@pytest.mark.slow
@pytest.mark.shared
def test_vdsr_trained_weights_score_in_the_test_entry_point_as_upscale_does(vdsr_run, benchmark_dir, tmp_path):
    summary = json.loads((vdsr_run / "summary.json").read_text())
    # 8 channels, 4 layers: 3*8*9 + 2*8*8*9 + 8*3*9 weights + 3*8 + 3 biases; the two inner convs as EDBBs train more
    assert summary["num_params"] == 1_611 < summary["num_params_train"]
    assert summary["macs_720p"] == (3 * 8 * 9 + 2 * 8 * 8 * 9 + 8 * 3 * 9) * HR_PIXELS
    weights = vdsr_run / "weights" / "model.pth"  # the training form: the test entry point folds it
    run("sr_lightning.test", *TINY_VDSR, f"weights={weights}", "test_sets=[Set5]",
        f"paths.benchmark_dir={benchmark_dir}", f"hydra.run.dir={tmp_path}", cwd=tmp_path)  # fmt: skip
    row = json.loads((tmp_path / "benchmark.json").read_text())["sets"]["Set5"]
    assert row["images"] == 5 and row["lr_source"] == "official"
    # the same network through `upscale_image` (the upscale CLI's path) and the test loop's scoring
    assert row["psnr"] == pytest.approx(set_psnr(load_model(weights), benchmark_dir, "Set5", 2), abs=1e-9)


@pytest.mark.slow
@pytest.mark.shared
def test_exports_run_like_pytorch(fsrcnn_run, vdsr_run, benchmark_dir, tmp_path):
    """The export CLI (ONNX, its own check at two sizes) and in-process exports of both networks, reloaded and run on
    a real LR crop at two sizes against PyTorch, within the export check's tolerance (conf/export.yaml: 1e-4)."""
    out = tmp_path / "vdsr.onnx"
    proc = run("sr_lightning.export", f"weights={vdsr_run / 'weights' / 'model.pth'}", "format=onnx",
               f"output={out}", f"hydra.run.dir={tmp_path / 'export'}", cwd=tmp_path)  # fmt: skip
    assert "check: max |export - PyTorch|" in proc.stdout + proc.stderr
    lr = to_float(lr_crop(benchmark_dir)).permute(2, 0, 1)[None]
    inputs = [lr, torch.cat([lr[..., :29, :31], lr[..., :29, :31].flip(-1)])]
    for name, run_dir in (("fsrcnn", fsrcnn_run), ("vdsr", vdsr_run)):
        model = load_model(run_dir / "weights" / "model.pth")
        files = [export_onnx(model, tmp_path / f"{name}.onnx"), export_torchscript(model, tmp_path / f"{name}.ts")]
        for exported in [load_model(f) for f in files] + ([load_model(out)] if name == "vdsr" else []):
            assert exported.scale == 2
            for x in inputs:
                with torch.no_grad():
                    assert (exported(x) - model(x)).abs().max().item() <= 1e-4, (name, exported.label)


@pytest.mark.slow
def test_complexity_entry_point_reports_both_forms(tmp_path):
    proc = run("sr_lightning.complexity", "model=vdsr", "scale=2", "runtime=false", f"hydra.run.dir={tmp_path}",
               cwd=tmp_path)  # fmt: skip
    report = json.loads((tmp_path / "complexity.json").read_text())
    assert (report["params_train"], report["params_deploy"]) == RGB_COUNTS["vdsr"]
    rgb_weights = RGB_COUNTS["vdsr"][1] - (19 * 64 + 3)  # deploy parameters minus the conv biases
    assert report["macs_720p"] == rgb_weights * HR_PIXELS
    assert "668,227" in proc.stdout
