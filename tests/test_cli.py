"""First contact with the entry points: a run without its required options prints a usage message (exit 2, no
traceback), `--help` lists only the config groups the entry point uses (no `_*` bases), and every entry point takes
its run and sweep directories and shared callbacks from `conf/hydra/default.yaml`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from compose import compose_with_hydra, group_options
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from sr_lightning.config import CONF_PACKAGE
from sr_lightning.utils.cli import USAGE_ERROR, RequiredOptions, config_groups_help, missing_options

#: entry point -> (an override that fills its required options, those options in config order)
ENTRY_POINTS = {
    "train": ([], []),
    "test": (["weights=x.pth"], ["weights"]),
    "benchmark": (["weights=[x.pth]"], ["weights"]),
    "upscale": (["weights=x.pth", "input=a.png", "output=out"], ["weights", "input", "output"]),
    "export": (["weights=x.pth", "format=onnx"], ["weights", "format"]),
    "complexity": (["model=efdn", "scale=2"], []),
}
GROUPS_HEADING = "== Config groups (group=option) =="


def run(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def help_groups(text: str) -> dict[str, list[str]]:
    """The `group: a, b, c` lines (after the groups heading of a --help, if any)."""
    lines = text.split(GROUPS_HEADING, 1)[-1].strip().splitlines()
    return {group: options.split(", ") for group, options in (line.split(": ", 1) for line in lines)}


def test_a_run_without_its_required_options_prints_its_usage(tmp_path):
    proc = run("sr_lightning.upscale", cwd=tmp_path)
    assert proc.returncode == USAGE_ERROR and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "python -m sr_lightning.upscale: missing required options: weights, input, output",
        "usage:   python -m sr_lightning.upscale weights=<file> input=<path> output=<folder> [key=value ...]   (or "
        "sr-upscale)",
        "example: python -m sr_lightning.upscale weights=efdn_x4.pth input=photos output=upscaled",
        "all options: python -m sr_lightning.upscale --help",
    ]
    assert not any(tmp_path.iterdir())  # stopped before Hydra created the run directory


def test_help_lists_the_groups_of_the_entry_point_only(tmp_path):
    proc = run("sr_lightning.upscale", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]  # sr_config_groups: registered by config.register_resolvers
    assert proc.stdout.startswith("usage:   python -m sr_lightning.upscale weights=<file>")
    assert help_groups(proc.stdout) == {"model": group_options("model"), "paths": ["default"]}
    assert "input: ???" in proc.stdout  # the composed config, required options marked


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_help_lists_the_groups_of_the_defaults_list(entry):
    """Each entry point's --help lists exactly the groups its defaults list uses, each with all its options."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONF_PACKAGE, version_base="1.3"):
        cfg = compose(entry, overrides=ENTRY_POINTS[entry][0], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        listed = help_groups(config_groups_help())
    used = {g for g in cfg.hydra.runtime.choices if g != "hydra" and not g.startswith("hydra/")}
    assert listed == {g: group_options(g) for g in used}
    assert "_loader" not in str(listed) and (entry == "train") == ("stage" in listed)
    assert cfg.hydra.help.header.startswith(f"usage:   python -m sr_lightning.{entry} ")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_required_options_are_the_missing_values(entry, capsys):
    filled, required = ENTRY_POINTS[entry]
    cfg = compose_with_hydra(entry, [])
    assert missing_options(cfg) == required
    assert missing_options(compose_with_hydra(entry, filled)) == []
    if required:
        with pytest.raises(SystemExit) as stop:
            RequiredOptions().on_run_start(config=cfg)
        assert stop.value.code == USAGE_ERROR
        err = capsys.readouterr().err
        assert f"missing required option{'s' * (len(required) > 1)}: {', '.join(required)}\n" in err
        assert str(cfg.hydra.help.header) in err and err.rstrip().endswith(" --help")


def test_missing_options_walks_nested_nodes_and_skips_interpolations():
    cfg = OmegaConf.create({"a": "???", "b": {"c": "???", "d": 1, "e": ["???"]}, "f": "${a}", "hydra": {"x": "???"}})
    assert missing_options(cfg) == ["a", "b.c", "b.e.0"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_run_and_sweep_directories_and_shared_callbacks_come_from_hydra_default(entry):
    hydra = compose_with_hydra(entry, ENTRY_POINTS[entry][0]).hydra
    assert hydra.runtime.choices.hydra == "default"
    assert OmegaConf.to_container(hydra.run) == {"dir": "${paths.log_dir}/${task_name}/runs/${now:%Y-%m-%d_%H-%M-%S}"}
    assert OmegaConf.to_container(hydra.sweep) == {
        "dir": "${paths.log_dir}/${task_name}/multiruns/${now:%Y-%m-%d_%H-%M-%S}",
        "subdir": "${hydra.job.num}",
    }
    shared = {"required_options": "sr_lightning.utils.cli.RequiredOptions", "console": "QuietConsole"}
    assert all(hydra.callbacks[name]._target_.endswith(target) for name, target in shared.items())
