"""The repository stays ruff-clean and its pre-commit configuration stays valid."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from sr_lightning.paths import REPO_ROOT


def run(*cmd: str) -> subprocess.CompletedProcess:
    if shutil.which(cmd[0]) is None:
        pytest.fail(f"{cmd[0]} is not installed: pip install -e '.[dev]'")
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_ruff_check():
    proc = run("ruff", "check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format():
    proc = run("ruff", "format", "--check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pre_commit_config_is_valid():
    proc = run("pre-commit", "validate-config", ".pre-commit-config.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for hook in ("trailing-whitespace-fixer", "end-of-file-fixer", "check-yaml", "nbstripout", "ruff"):
        assert shutil.which(hook), f"pre-commit hook executable {hook} missing from the dev install"
