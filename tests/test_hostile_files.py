"""Files from strangers: no weights file, checkpoint or metadata may make any loading path run code (issue 19).

The hostile files are built once per session (`_hostile.py`); positive controls prove that each would run its code
under the loaders the package used before (Hydra `instantiate`, `torch.load(weights_only=False)`), so a loader that
regressed would write the marker and fail here.
"""

from __future__ import annotations

import ast
import contextlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _hostile import Payload, build_hostile_files, chains
from compose import compose_cfg
from hydra.utils import instantiate
from omegaconf import open_dict

from sr_lightning import benchmark, complexity, export, test, train, upscale
from sr_lightning.inference.loading import load_model
from sr_lightning.utils.resume import find_resume_checkpoint, wandb_run_id
from sr_lightning.weights import init_weights_from, load_weights

SRC = Path(__file__).parents[1] / "src" / "sr_lightning"

#: what each file's refusal must say (besides the file's path)
EXPECTED = {
    "chain_pathlib.pth": r"'_target_' = 'sr_lightning\.utils\.resume\.Path\.touch' is not one of this package's",
    "chain_shutil.pth": r"'_target_' = 'sr_lightning\.utils\.atomic\.shutil\.copyfile' is not one of",
    "chain_torch_save.pth": r"'_target_' = 'sr_lightning\.weights\.torch\.save' is not one of",
    "chain_os_open.pth": r"'_target_' = 'sr_lightning\.utils\.atomic\.os\.open' is not one of",
    "chain_nested_torch_load.pth": r"'conv3x3\._target_' = 'sr_lightning\.weights\.torch\.load' is not one of this "
    r"package's block factories",
    "chain_torch_save.ckpt": r"'_target_' = 'sr_lightning\.weights\.torch\.save' is not one of",
    "chain_shutil.safetensors": r"'_target_' = 'sr_lightning\.utils\.atomic\.shutil\.copyfile' is not one of",
    "payload.pth": r"holds Python objects besides tensors",
    "payload.ckpt": r"holds Python objects besides tensors",
    "torchscript.pth": r"a TorchScript file under a weights name.*name it \*\.ts or pass backend=torchscript",
    "onnx.pth": r"an ONNX file under a weights name.*name it \*\.onnx or pass backend=onnx",
    "meta_unknown_key.pth": r"unknown metadata key 'run_this'",
    "meta_unknown_option.pth": r"key 'hook' is not an option of EFDN",
    "meta_wrong_type.pth": r"key 'channels' = '8' is not of the option's type",
    "meta_wrong_scale.pth": r"metadata key 'scale' = '2' is not an SR factor",
    "meta_huge_value.pth": r"key 'channels' is 1000000000, beyond the bound",
    "meta_huge_network.pth": r"describes [\d,]+ tensor elements",
    "meta_long_list.pth": r"key 'conv3x3\.branches' is a list of 100000 items",
    "meta_deep.pth": r"key 'esa_channels\.v' is not a plain value",
    "meta_not_a_mapping.pth": r"the model config is a list, not a mapping",
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("hostile")
    marker = root / "marker"
    files = build_hostile_files(root / "files", marker)
    assert set(files) == set(EXPECTED)
    return marker, files


def _refused(call, path: Path, marker: Path, exc: type[BaseException] = ValueError) -> None:
    name = path.name
    with pytest.raises(exc, match=re.escape(str(path)) + r".*" + EXPECTED[name]):
        call()
    assert not marker.exists(), f"{name}: the marker was written"


def test_the_hostile_files_would_run_their_code(tmp_path: Path) -> None:
    """Positive controls: every chain runs under Hydra `instantiate`, every payload under an unsafe unpickler."""
    planted = tmp_path / "planted.pkl"
    for name in chains(tmp_path / "unused", planted):
        marker = tmp_path / f"marker_{name}"
        torch.save(Payload(marker), planted)
        with contextlib.suppress(Exception):  # a chain may fail after its side effect (EFDN given a tensor)
            instantiate(chains(marker, planted)[name])
        assert marker.exists(), f"chain {name} did not run"
    files = build_hostile_files(tmp_path / "files", tmp_path / "payload_marker")
    torch.load(files["payload.ckpt"], weights_only=False)
    assert (tmp_path / "payload_marker").exists()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_model_and_load_weights_refuse(hostile, name: str) -> None:
    marker, files = hostile
    _refused(lambda: load_model(files[name]), files[name], marker)
    _refused(lambda: load_weights(torch.nn.Conv2d(1, 1, 1), files[name]), files[name], marker)
    _refused(lambda: init_weights_from(torch.nn.Conv2d(1, 1, 1), files[name]), files[name], marker)


def _entry_configs(tmp_path: Path, shared_dir: Path) -> dict[str, tuple]:
    bench = shared_dir / "data" / "benchmark"
    lr = bench / "Set5" / "LR_bicubic" / "X2"
    return {
        "test": (test.evaluate, compose_cfg("test", ["model=efdn", "scale=2", "weights=x", "test_sets=[Set5]",
                                                     f"paths.benchmark_dir={bench}"], tmp_path / "t")),
        "upscale": (upscale.run, compose_cfg("upscale", ["weights=x", f"input={lr}", f"output={tmp_path / 'u'}"],
                                             tmp_path / "ur")),
        "export": (export.export, compose_cfg("export", ["weights=x", "format=safetensors"], tmp_path / "e")),
        "complexity": (complexity.run, compose_cfg("complexity", ["weights=x"], tmp_path / "c")),
        "benchmark": (benchmark.run, compose_cfg("benchmark", ["weights=[x]", "test_sets=[Set5]",
                                                               f"paths.benchmark_dir={bench}"], tmp_path / "b")),
    }  # fmt: skip


@pytest.mark.shared
def test_entry_points_refuse_every_hostile_file(hostile, tmp_path: Path, shared: Path) -> None:
    marker, files = hostile
    for entry, (call, cfg) in _entry_configs(tmp_path, shared).items():
        for path in files.values():
            with open_dict(cfg):
                cfg.weights = [str(path)] if entry == "benchmark" else str(path)
            try:
                _refused(lambda c=cfg, f=call: f(c), path, marker)
            except AssertionError as err:
                raise AssertionError(f"{entry}: {err}") from err


def test_train_refuses_hostile_weights_init_and_resume(hostile, tmp_path: Path) -> None:
    marker, files = hostile
    tiny = ["model.channels=8", "model.num_blocks=3", "model.esa_channels=2", "scale=2", "data.num_workers=0"]
    for key in ("weights", "init_from"):
        for name in ("chain_nested_torch_load.pth", "payload.ckpt", "torchscript.pth", "meta_unknown_option.pth"):
            cfg = compose_cfg("train", [*tiny, f"{key}={files[name]}", "trainer.max_steps=1"], tmp_path / key)
            _refused(lambda c=cfg: train.train(c), files[name], marker)
    # a pickle payload planted as a run's last.ckpt, reached by every resume route
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(files["payload.ckpt"].read_bytes())
    routes = (("resume=auto", run), (f"resume={run}", tmp_path / "other"), (f"resume={last}", tmp_path / "other"),
              (f"ckpt_path={last}", tmp_path / "other"))  # fmt: skip
    for override, out in routes:
        cfg = compose_cfg("train", [*tiny, override], out)
        with pytest.raises(ValueError, match=re.escape(str(last)) + r".*holds Python objects besides tensors"):
            train.train(cfg)
        assert not marker.exists(), override
    with pytest.raises(ValueError, match="holds Python objects"):
        find_resume_checkpoint("auto", None, run)
    with pytest.raises(ValueError, match="holds Python objects"):
        wandb_run_id(last)  # the W&B id lookup reads the same file
    assert not marker.exists()


def test_programs_load_only_when_chosen(hostile, tmp_path: Path) -> None:
    """The same TorchScript archive runs when its name or backend= chooses it (the refusal above is of the name)."""
    _, files = hostile
    ts = tmp_path / "conv.ts"
    ts.write_bytes(files["torchscript.pth"].read_bytes())
    for chosen in (lambda: load_model(ts), lambda: load_model(files["torchscript.pth"], backend="torchscript")):
        with pytest.raises(ValueError, match="TorchScript file without sr_lightning metadata"):  # it was loaded
            chosen()
    with pytest.raises(ValueError, match="backend='python'"):
        load_model(ts, backend="python")


@pytest.mark.slow
@pytest.mark.shared
def test_entry_point_subprocesses_refuse_and_say_so(hostile, tmp_path: Path, shared: Path) -> None:
    """One real command per entry point: exit 1, the file and the key in the error, no marker."""
    marker, files = hostile
    path = files["chain_nested_torch_load.pth"]
    commands = {
        "test": ["weights=" + str(path), "model=efdn", "scale=2"],
        "upscale": ["weights=" + str(path), f"input={shared / 'data/benchmark/Set5/LR_bicubic/X2'}", "output=out"],
        "export": ["weights=" + str(path), "format=onnx"],
        "complexity": ["weights=" + str(path)],
        "benchmark": [f"weights=[{path}]"],
        "train": [f"weights={path}", "trainer.max_steps=1"],
    }
    for entry, overrides in commands.items():
        proc = subprocess.run(
            [sys.executable, "-m", f"sr_lightning.{entry}", *overrides, f"hydra.run.dir={tmp_path / entry}"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, f"{entry}: exit {proc.returncode}\n{out[-3000:]}"
        assert str(path) in out and "conv3x3._target_" in out, f"{entry}:\n{out[-3000:]}"
        assert not marker.exists(), entry


def test_every_torch_load_in_the_package_is_weights_only() -> None:
    """Parse the package: any torch.load call without a literal weights_only=True fails."""
    offenders = []
    for file in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name != "load" or not (isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "torch"):
                continue
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in node.keywords)  # fmt: skip
            if not safe:
                offenders.append(f"{file.relative_to(SRC)}:{node.lineno}")
    assert not offenders, f"torch.load without weights_only=True: {offenders}"
    assert (SRC / "weights_file.py").read_text().count("weights_only=True") >= 1  # the parser sees our one loader


def test_no_instantiate_of_file_contents() -> None:
    """The weights path never imports Hydra's instantiate: files are built through archs.model_config only."""
    for rel in ("weights.py", "weights_file.py", "inference/detect.py", "inference/loading.py", "archs/model_config.py",
                "archs/forms.py", "utils/resume.py"):  # fmt: skip
        text = (SRC / rel).read_text()
        assert "instantiate" not in re.sub(r"#.*|\"\"\"[\s\S]*?\"\"\"", "", text), rel
