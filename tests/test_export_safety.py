"""`export` never destroys a file: output = weights is refused, a failed check leaves nothing under the final name,
and TorchScript (a program) is written under a program's name and checked by explicit choice (issue 19)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from compose import compose_cfg

from sr_lightning.archs.efdn import EFDN
from sr_lightning.export import export
from sr_lightning.weights import save_weights

META = {"model": {"_target_": "sr_lightning.archs.efdn.EFDN", "scale": 2, "channels": 8, "num_blocks": 3,
                  "esa_channels": 2}, "scale": 2}  # fmt: skip


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    return save_weights(EFDN(scale=2, channels=8, num_blocks=3, esa_channels=2), tmp_path / "w.pth", META)


def _export(tmp_path: Path, *overrides: str):
    return export(compose_cfg("export", list(overrides), tmp_path / "run"))


def test_output_equal_to_weights_is_refused(weights: Path, tmp_path: Path) -> None:
    before = weights.read_bytes()
    for fmt in ("safetensors", "official", "onnx"):
        with pytest.raises(ValueError, match=re.escape(f"output={weights} is the weights file itself")):
            _export(tmp_path, f"weights={weights}", f"format={fmt}", f"output={weights}")
    assert weights.read_bytes() == before


def test_failed_check_leaves_nothing_under_the_final_name(weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "w.safetensors"
    out.parent.mkdir()
    with pytest.raises(RuntimeError, match=r"the export differs from PyTorch by .* not written"):
        # a negative tolerance fails any check: the staged file must not be renamed
        _export(tmp_path, f"weights={weights}", "format=safetensors", f"output={out}", "check_tolerance=-1")
    assert list(out.parent.iterdir()) == []  # neither the output nor its temporary file
    # an existing file under that name survives a failed check
    out.write_bytes(b"previous export")
    with pytest.raises(RuntimeError, match="not written"):
        _export(tmp_path, f"weights={weights}", "format=safetensors", f"output={out}", "check_tolerance=-1")
    assert out.read_bytes() == b"previous export" and len(list(out.parent.iterdir())) == 1
    assert _export(tmp_path, f"weights={weights}", "format=safetensors", f"output={out}") == out
    assert out.read_bytes() != b"previous export"


def test_torchscript_takes_a_program_name(weights: Path, tmp_path: Path) -> None:
    for name in ("model.pth", "model.pt", "model.ckpt", "model.safetensors"):
        with pytest.raises(ValueError, match=r"a TorchScript program under a weights name .* name it \*\.ts"):
            _export(tmp_path, f"weights={weights}", "format=torchscript", f"output={tmp_path / name}")
    path = _export(tmp_path, f"weights={weights}", "format=torchscript")  # default name: <stem>.ts, checked
    assert path.suffix == ".ts" and path.is_file()
