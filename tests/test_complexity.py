"""The complexity report (`sr_lightning.profiling`, `python -m sr_lightning.complexity`): hand-checkable counts, the
EFDN reference figures of the official code, FDIWN without its weight-normalised convs, memory and runtime."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from compose import compose_cfg
from hydra.utils import instantiate
from torch import nn

from sr_lightning.archs.edbb import set_edbb_mode
from sr_lightning.archs.efdn import EFDN
from sr_lightning.archs.fdiwn import FDIWN
from sr_lightning.archs.weight_norm import weight_normed
from sr_lightning.complexity import run
from sr_lightning.profiling import count_convs, count_macs, format_complexity_table, measure_complexity
from sr_lightning.profiling.counts import macs_of
from sr_lightning.profiling.memory import peak_memory, resident_bytes, tensor_peak_bytes

# The official code's figures for EFDN x4, deploy form (NTIRE 2022 ESR: 256x256 LR input; MACs at 720p output).
EFDN_X4 = {"params": 276_192, "flops_256": 16.69, "activations_256": 111.12, "conv_calls_256": 65, "macs_720p": 14.67}
# Our exact counts behind those rounded figures (regression pins).
EFDN_X4_EXACT = {"flops_256": 16_690_887_936, "activations_256": 111_116_736, "macs_720p": 14_668_827_840}
CONV_MACS_256 = 3 * 8 * 9 * 256 * 256


class OneConv(nn.Module):
    """conv 3->8 3x3 (same padding) followed by a pixel shuffle: an x1 "network" counted by hand."""

    def __init__(self, calls: int = 1, weight_norm: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = weight_normed(conv) if weight_norm else conv
        self.back = nn.Conv2d(8, 3, 1)
        self.calls = calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        for _ in range(self.calls - 1):  # the same module again (shared weights), as FDIWN calls its FSWGs
            y = y + self.conv(x)
        return self.back(y)


def efdn_from_config(scale: int, tmp_path) -> nn.Module:
    """EFDN as `model=efdn scale=<s>` composes it: the training form (seven-branch EDBBs, online)."""
    return instantiate(compose_cfg("complexity", ["model=efdn", f"scale={scale}"], tmp_path).model)


def rounded(report: dict) -> dict:
    return {
        "params": report["params"],
        "flops_256": round(report["flops_256"] / 1e9, 2),
        "activations_256": round(report["activations_256"] / 1e6, 2),
        "conv_calls_256": report["conv_calls_256"],
        "macs_720p": round(report["macs_720p"] / 1e9, 2),
    }


def test_one_conv_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1))
    counts = count_convs(net, (256, 256))
    assert (counts.macs, counts.activations, counts.conv_calls) == (CONV_MACS_256, 8 * 256 * 256, 1)
    report = measure_complexity(net, 1, runtime=False)
    assert report["flops_256"] == CONV_MACS_256 and report["activations_256"] == 8 * 256 * 256
    assert report["macs_720p"] == 3 * 8 * 9 * 720 * 1280 and report["params"] == 3 * 8 * 9 + 8


def test_a_module_called_twice_counts_twice():
    once, twice = count_convs(OneConv(1), (256, 256)), count_convs(OneConv(2), (256, 256))
    back = 8 * 3 * 256 * 256
    assert once.macs == CONV_MACS_256 + back and twice.macs == 2 * CONV_MACS_256 + back
    assert (twice.conv_calls, twice.activations) == (3, 2 * 8 * 256 * 256 + 3 * 256 * 256)
    # FlopCounterMode's per-module breakdown sums every call; a parent holds its children's MACs, counted once
    assert twice.macs_by_module["conv"] == 2 * CONV_MACS_256 and twice.macs_by_module[""] == twice.macs
    assert macs_of(twice, ["", "conv"]) == twice.macs


def test_weight_normed_convs_left_out_every_call():
    net = OneConv(calls=2, weight_norm=True)
    for form in ("deploy", "train"):
        r = measure_complexity(net, 1, form=form, runtime=False)
        assert r["weight_norm_convs"] == 1
        assert r["flops_256_excluding_weight_norm"] == r["flops_256"] - 2 * CONV_MACS_256
        assert r["macs_720p_excluding_weight_norm"] == 8 * 3 * 720 * 1280  # the 1x1 conv alone
        assert r["params_train"] == r["params_deploy"] + 8  # weight norm's g: one per output channel
    assert measure_complexity(OneConv(), 1, runtime=False)["macs_720p_excluding_weight_norm"] is None


def test_efdn_x4_config_gives_the_reference_figures(tmp_path):
    """`model=efdn scale=4` (training form, no weights): its deploy form has the official code's figures."""
    report = measure_complexity(efdn_from_config(4, tmp_path), 4, runtime=False)
    assert rounded(report) == EFDN_X4
    assert {k: report[k] for k in EFDN_X4_EXACT} == EFDN_X4_EXACT
    assert report["params_train"] == 723_552 and report["params_deploy"] == 276_192
    assert report["macs_720p"] == count_macs(EFDN(scale=4), 4)


def test_training_form_counts_each_edbb_as_one_conv(tmp_path):
    net = efdn_from_config(4, tmp_path)
    deploy = measure_complexity(net, 4, runtime=False)
    online = measure_complexity(net, 4, form="train", runtime=False)
    set_edbb_mode(net, "branch")
    branch = measure_complexity(net, 4, form="train", runtime=False)
    for r in (online, branch):  # one call per EDBB (its output), whatever the mode; the branches are not counted
        assert (r["activations_256"], r["conv_calls_256"]) == (deploy["activations_256"], deploy["conv_calls_256"])
        assert r["params"] == 723_552 and "re-parameterizable block counts as one conv" in r["activations_method"]
    # online: one conv per block plus the kernel merge (input-size independent); branch: every branch conv
    assert 0 < online["flops_256"] - deploy["flops_256"] < 0.01 * deploy["flops_256"]
    assert branch["flops_256"] > 2 * deploy["flops_256"]


# (FSWGs, scale): MACs at 720p of all convs / without the weight-normalised ones (ours, G), and the Multi-Adds of the
# official FDIWN README (24wenjie-li/FDIWN; the paper's Table: FDIWN 112.0 / 51.5 / 28.4 G, FDIWN-M 35.9 / 19.6 G).
FDIWN_MACS = {
    (3, 2): (270.89, 112.03, 112.0),
    (3, 3): (121.98, 51.49, 51.5),
    (3, 4): (71.21, 28.36, 28.4),
    (2, 3): (82.93, 35.94, 35.9),
    (2, 4): (48.17, 19.60, 19.6),
}


@pytest.mark.parametrize(("num_groups", "scale"), list(FDIWN_MACS))
def test_fdiwn_paper_macs_leave_out_the_weight_normalised_convs(num_groups, scale):
    all_convs, excluding, paper = FDIWN_MACS[(num_groups, scale)]
    r = measure_complexity(FDIWN(scale=scale, num_groups=num_groups), scale, runtime=False)
    assert round(r["macs_720p"] / 1e9, 2) == all_convs
    assert round(r["macs_720p_excluding_weight_norm"] / 1e9, 2) == excluding
    assert round(r["macs_720p_excluding_weight_norm"] / 1e9, 1) == paper
    assert r["weight_norm_convs"] == 66 * num_groups


def test_official_efdn_x4_report(official_weights_dir, tmp_path):
    weights = official_weights_dir / "efdn_x4_official.pth"
    deploy = run(compose_cfg("complexity", [f"weights={weights}", "runtime=false"], tmp_path))
    assert rounded(deploy) == EFDN_X4 and deploy["params_deploy"] == 276_192
    assert deploy["network"] == "EFDN" and deploy["weights"] == str(weights)
    config_only = measure_complexity(efdn_from_config(4, tmp_path), 4, runtime=False)
    assert {k: deploy[k] for k in config_only if k.endswith(("_256", "_720p"))} == {
        k: v for k, v in config_only.items() if k.endswith(("_256", "_720p"))
    }
    train = run(compose_cfg("complexity", [f"weights={weights}", "runtime=false", "form=train"], tmp_path))
    assert train["form"] == "train" and train["params"] == train["params_train"] == 723_552
    assert "conf/model/efdn.yaml" in train["train_form_source"] and "weights not loaded" in train["train_form_source"]
    assert any("holds the deploy form" in note for note in train["notes"])


def test_load_model_output_finds_its_training_form(official_weights_dir):
    from sr_lightning import load_model

    net = load_model(official_weights_dir / "efdn_x4_official.pth")  # deploy form, with its detected config
    report = measure_complexity(net, 4, runtime=False)
    assert (report["params_train"], report["params_deploy"]) == (723_552, 276_192)


def test_cpu_peak_memory_of_one_conv():
    """input + weights + output is the least one conv needs; the allocator also sees the kernels' workspaces."""
    net = nn.Conv2d(3, 8, 3, padding=1).eval()
    x = torch.rand(1, 3, 256, 256)
    floor = resident_bytes(net, x) + 8 * 256 * 256 * 4
    assert resident_bytes(net, x) == (3 * 256 * 256 + 3 * 8 * 9 + 8) * 4
    assert tensor_peak_bytes(net, x) == floor
    peak, method = peak_memory(net, x)
    assert floor <= peak <= floor + 4 * 8 * 256 * 256 * 4 and method.startswith("CPU:")


def test_cpu_allocator_peak_against_live_tensors():
    net = EFDN(scale=4).eval()
    x = torch.rand(1, 3, 64, 64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = peak_memory(net, x)[0], tensor_peak_bytes(net, x)
        torch.set_num_threads(2)
        two = peak_memory(net, x)[0], tensor_peak_bytes(net, x)
    finally:
        torch.set_num_threads(threads)
    assert one[1] == two[1]  # the tensors do not depend on threads
    assert one[0] >= one[1] and two[0] >= two[1]
    assert one[0] - one[1] < 0.05 * one[1]  # one thread: hardly any workspace beyond the tensors


def test_runtime_and_table(tmp_path):
    net = efdn_from_config(2, tmp_path)
    r = measure_complexity(net, 2, lr_size=32, runs=3, warmup=1, device="cpu")
    assert r["runtime_runs"] == 3 and r["runtime_warmup"] == 1 and r["runtime_device"] == "cpu"
    assert r["runtime_threads"] == torch.get_num_threads() and 0 < r["runtime_ms_median"]
    assert r["runtime_input"].startswith("1x3x32x32 uniform [0, 1), seed 0")
    assert r["peak_memory_bytes"] >= r["peak_memory_tensors_bytes"] > 0
    json.dumps(r)  # flat and JSON-able
    table = format_complexity_table([r, measure_complexity(net, 2, lr_size=32, runtime=False)])
    for label in (
        "| Figure | EFDN x2 (deploy) | EFDN x2 (deploy) |",
        "| FLOPs (NTIRE: MACs, 32x32 LR) |",
        "| Activations (NTIRE: conv outputs, 32x32 LR) |",
        "| MACs (papers: 1280x720 output) |",
        "| Peak memory (CPU: weights + input + peak of c10 CPU-allocator bytes",
        f"| Runtime (CPU, {torch.get_num_threads()} threads, mean / median of 3, 32x32 LR) |",
    ):
        assert label in table, table


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_memory_and_runtime():
    r = measure_complexity(EFDN(scale=4), 4, runs=3, warmup=1, device="cuda")
    assert r["peak_memory_method"].startswith("GPU:") and r["peak_memory_bytes"] > 0
    assert r["runtime_device"].startswith("cuda") and r["runtime_threads"] is None


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="form must be one of"):
        measure_complexity(OneConv(), 1, form="folded")
    with pytest.raises(ValueError, match="model=<name> scale=<s>"):
        run(compose_cfg("complexity", [], tmp_path))
    with pytest.raises(ValueError, match="needs scale"):
        run(compose_cfg("complexity", ["model=efdn"], tmp_path))


def test_entry_point_writes_complexity_json_and_md(tmp_path):
    out = tmp_path / "run"
    cmd = ["-m", "sr_lightning.complexity", "model=fdiwn_m", "scale=4", "lr_size=24", "runs=2", "warmup=0"]
    proc = subprocess.run(
        [sys.executable, *cmd, f"hydra.run.dir={out}"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "complexity.json").read_text())
    assert report["network"] == "FDIWN-M" and report["params_train"] == 454_648 and report["weights"] is None
    assert report["lr_size"] == [24, 24] and report["runtime_runs"] == 2
    assert "| Figure | FDIWN-M x4 (deploy) |" in proc.stdout
    table = (out / "complexity.md").read_text()  # the table it prints, notes included (docs/results.md: "Complexity")
    assert table.startswith("| Figure | FDIWN-M x4 (deploy) |") and table.strip() in proc.stdout
    assert "USDT" not in proc.stdout + proc.stderr  # kineto's profiler_start / profiler_stop (CPU peak memory)
