"""Installs anywhere: the configs ship as the package `sr_lightning.conf`, paths do not assume a checkout, and a
user's own config folder (README "Your own configs") composes and trains through the real entry point.

The wheel itself is built, installed in a fresh environment and run from outside the checkout by `.ci/run`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from compose import compose_cfg, group_options, packaged_yaml
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from test_entry_points import TINY_TRAIN

from sr_lightning import paths
from sr_lightning.config import conf_files
from sr_lightning.paths import REPO_ROOT, checkout_root, shared_dir
from sr_lightning.weights import count_parameters, load_weights

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

# What the user's experiment must add up to: the same network as these command-line overrides of the defaults.
USER_EXPERIMENT_EQUIVALENT = ["scale=2", "model.channels=32", "model.num_blocks=3", "model.esa_channels=8", "loss=l2"]


def _readme_user_config() -> tuple[str, str]:
    """The example of README "Your own configs": (file name under the user's folder, YAML text)."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("### Your own configs", 1)[1]
    match = re.search(r"`my_configs/(\S+\.yaml)`.*?```yaml\n(.*?)```", section, re.S)
    assert match, "README 'Your own configs' has no `my_configs/<file>.yaml` followed by a yaml block"
    return match.group(1), match.group(2)


@pytest.fixture
def user_config_dir(tmp_path: Path) -> Path:
    """A user's config folder holding the README's example experiment."""
    name, text = _readme_user_config()
    path = tmp_path / "my_configs" / name
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path.parents[1]


def test_package_list_is_the_source_tree():
    """pyproject lists its packages by hand (conf/ is mapped outside src/): every package under src/ must be listed,
    or the wheel silently lacks it while the editable install still works."""
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    src = REPO_ROOT / "src"
    found = {".".join(p.parent.relative_to(src).parts) for p in src.rglob("__init__.py")}
    assert set(setuptools["packages"]) == found | {"sr_lightning.conf"}
    assert setuptools["package-dir"] == {"": "src", "sr_lightning.conf": "conf"}
    # Hydra's pkg:// source only accepts a package with an __init__.py.
    assert (REPO_ROOT / "conf" / "__init__.py").is_file()


def test_packaged_configs_are_the_checkout_conf():
    """pkg://sr_lightning.conf resolves to conf/ of this checkout (one source of the configs): the same YAML files with
    the same text, and `group_options` lists each group's files (but the `_*` bases)."""
    conf = REPO_ROOT / "conf"
    on_disk = {p.relative_to(conf).as_posix(): p.read_text() for p in conf.rglob("*.yaml")}
    packaged = {name: conf_files().joinpath(name).read_text() for name in packaged_yaml()}
    assert packaged == on_disk
    for group in {name.split("/")[0] for name in on_disk if "/" in name}:
        files = [p for p in (conf / group).rglob("*.yaml") if not p.name.startswith("_")]
        names = sorted(p.relative_to(conf / group).with_suffix("").as_posix() for p in files)
        assert group_options(group) == names


def test_shared_dir_defaults(monkeypatch, tmp_path):
    """$SR_SHARED_DIR wins; else ../shared beside the checkout (whatever the working directory); else, installed from a
    wheel, ../shared relative to the working directory."""
    monkeypatch.delenv("SR_SHARED_DIR", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert checkout_root() == REPO_ROOT
    assert shared_dir() == REPO_ROOT.parent.resolve() / "shared"
    monkeypatch.setattr(paths, "checkout_root", lambda: None)
    assert shared_dir() == tmp_path.resolve() / "shared"
    monkeypatch.setenv("SR_SHARED_DIR", str(tmp_path / "elsewhere"))
    assert shared_dir() == tmp_path.resolve() / "elsewhere"


def test_user_experiment_composes_via_searchpath(user_config_dir, tmp_path):
    """The README example, found through hydra.searchpath, builds the network its overrides describe; without the
    search path the option does not exist."""
    name = "experiment=" + _readme_user_config()[0].removeprefix("experiment/").removesuffix(".yaml")
    cfg = compose_cfg("train", [f"hydra.searchpath=[file://{user_config_dir}]", name], tmp_path)
    expected = compose_cfg("train", USER_EXPERIMENT_EQUIVALENT, tmp_path)
    assert cfg.model == expected.model and cfg.loss == expected.loss and cfg.scale == 2
    assert count_parameters(instantiate(cfg.model)) == count_parameters(instantiate(expected.model))
    with pytest.raises(HydraException):
        compose_cfg("train", [name], tmp_path)


@pytest.mark.slow
def test_user_experiment_trains_from_outside_the_checkout(user_config_dir, tmp_path):
    """`python -m sr_lightning.train --config-dir <user folder> experiment=<theirs>` from a directory outside the
    checkout: exits 0, and the saved weights load strictly into the network the experiment describes."""
    name = _readme_user_config()[0].removeprefix("experiment/").removesuffix(".yaml")
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    cmd = [sys.executable, "-m", "sr_lightning.train", "--config-dir", str(user_config_dir), f"experiment={name}"]
    cmd += [*TINY_TRAIN, f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-5000:]
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    expected = compose_cfg("train", USER_EXPERIMENT_EQUIVALENT, tmp_path)
    assert saved.model == OmegaConf.to_container(expected.model) and saved.loss == expected.loss
    net = instantiate(saved.model)
    load_weights(net, run_dir / "weights" / "model.pth")


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("0", "0")])
def test_huge_pages_for_torch_cpu_tensors_set_before_torch(given, expected):
    """Every entry module asks torch's CPU allocator for huge pages (before torch allocates) unless the environment
    says otherwise; the library itself changes nothing in the process (`sr_lightning/process.py`)."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if given is not None:
        env["THP_MEM_ALLOC_ENABLE"] = given
    code = "import os, sr_lightning.train; print(os.environ['THP_MEM_ALLOC_ENABLE'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == expected


def test_importing_the_library_changes_nothing_in_the_process():
    """No environment variable, resolver or patch of another library at import: only the entry points set them."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    code = (
        "import os\n"
        "from omegaconf import OmegaConf\n"
        "from lightning.pytorch.strategies.launchers import subprocess_script as s\n"
        "before = s._hydra_subprocess_cmd\n"
        "import sr_lightning, sr_lightning.metrics, sr_lightning.weights, sr_lightning.inference.loading\n"
        "import sr_lightning.utils.instantiate, sr_lightning.lightning.module\n"
        "print(os.environ.get('THP_MEM_ALLOC_ENABLE'), OmegaConf.has_resolver('sr_accelerator'),"
        " s._hydra_subprocess_cmd is before)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[-3:] == ["None", "False", "True"]
