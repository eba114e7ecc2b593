"""The notebooks (quickstart.ipynb, upscale_and_export.ipynb) run top to bottom (so they cannot rot) and are stored
without outputs."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from sr_lightning.paths import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "quickstart.ipynb"
UPSCALE_NOTEBOOK = REPO_ROOT / "notebooks" / "upscale_and_export.ipynb"


@pytest.mark.parametrize("path", [NOTEBOOK, UPSCALE_NOTEBOOK], ids=lambda p: p.stem)
def test_notebook_is_stripped(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "run nbstripout on the notebook"


@pytest.mark.slow
def test_quickstart_notebook_executes(official_weights_dir, benchmark_dir):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "EFDN     Y-PSNR" in printed and "276,192 parameters" in printed
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2, "expected the comparison figure and the gradient-map figure"


@pytest.mark.shared
@pytest.mark.slow
def test_upscale_and_export_notebook_executes(official_weights_dir):
    pytest.importorskip("onnx")  # the `export` extra
    pytest.importorskip("onnxruntime")
    nb = nbformat.read(UPSCALE_NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(UPSCALE_NOTEBOOK.parent)}}
    ).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    for expected in ("EFDN  tiled    vs whole", "FDIWN tiled    vs whole", "onnxruntime vs PyTorch", "through ONNX"):
        assert expected in printed
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2, "expected the side-by-side crops and the tiled-vs-whole difference maps"
