"""The console of the entry points (`sr_lightning.utils.console`): Lightning's per-trainer notices, its LeafSpec
deprecation warning, kineto's USDT lines and the DDP ranks' repeated INFO lines stay off it; everything else stays."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import torch
from test_entry_points import TINY_TRAIN, run
from torch import nn

from sr_lightning.profiling.memory import cpu_allocator_peak
from sr_lightning.utils.console import LEAFSPEC_DEPRECATION, RankZeroConsole

#: what the three noise sources print (Lightning 2.6, torch 2.13), as a user saw it on every run
NOISE = (
    "💡 Tip: For seamless cloud logging",
    "`isinstance(treespec, LeafSpec)` is deprecated",
    "limit_val_batches=1.0",
)


def _quiet(text: str) -> None:
    for line in NOISE + ("USDT:",):
        assert line not in text, f"{line!r} is on the console:\n{text}"


def test_benchmark_console_has_no_noise(official_weights_dir, benchmark_dir, tmp_path):
    """One benchmark, two trainers (whole images and chopped): the device line once, no notice, the Table 4 row CI
    greps, the parameter count labelled with its form."""
    proc = run(
        "sr_lightning.benchmark",
        f"weights=[{official_weights_dir / 'efdn_x4_official.pth'}]",
        "test_sets=[Set5]",
        f"paths.benchmark_dir={benchmark_dir}",
        "chop=true",
        "plot.enabled=false",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
    )
    console = proc.stdout + proc.stderr
    _quiet(console)
    assert console.count("GPU available: False, used: False") == 1  # two trainers, one distinct text
    assert "| Set5 | x4 | 28.43/0.8111 | 32.08/0.8931 |" in proc.stdout  # .ci/run greps this row of table4.md
    assert "EFDN, deploy form: 276.2K params, 14.7G MACs" in proc.stdout


def test_ddp_ranks_print_their_info_lines_once(tmp_path):
    """Rank 1 repeats `main()` and `train()`: its INFO lines go to its log file, not to the console."""
    proc = run("sr_lightning.train", "hardware=ddp_cpu", "trainer.devices=2", *TINY_TRAIN, f"hydra.run.dir={tmp_path}",
               cwd=tmp_path)  # fmt: skip
    console = proc.stdout + proc.stderr
    _quiet(console)
    assert console.count("output dir:") == 1 and console.count("final network:") == 1
    rank1 = (tmp_path / "train_ddp_rank1.log").read_text()
    assert "output dir:" in rank1 and "final network:" in rank1


def test_kineto_lines_leave_the_console_other_native_output_stays(capfd):
    class Noisy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            os.write(2, b"native line kept\n")  # what C++ writing to stderr during the forward looks like
            return x * 2

    assert cpu_allocator_peak(Noisy(), torch.ones(4, 4)) >= 4 * 4 * 4  # still measured: the float32 output at least
    out, err = capfd.readouterr()
    assert "USDT" not in out + err and err == "native line kept\n"


def test_rank_zero_console(monkeypatch):
    def record(level: int) -> logging.LogRecord:
        return logging.LogRecord("sr_lightning.x", level, __file__, 1, "final network: %s", ("best.ckpt",), None)

    console = RankZeroConsole()
    assert console.filter(record(logging.INFO))
    monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP rank Lightning started
    assert not console.filter(record(logging.INFO)) and console.filter(record(logging.WARNING))


def test_other_warnings_pass():
    """The LeafSpec filter is for Lightning's module only: the same warning from elsewhere is still shown."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        message, category, module = LEAFSPEC_DEPRECATION  # as `quiet_console` installs it (no logging filter here)
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
        warnings.warn_explicit(
            "`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, "x.py", 1, module="my.module"
        )
        warnings.warn_explicit(
            "`isinstance(treespec, LeafSpec)` is deprecated, use ...",
            FutureWarning,
            "_pytree.py",
            21,
            module="lightning.pytorch.utilities._pytree",
        )
    assert [str(w.message)[:30] for w in caught] == ["`isinstance(treespec, LeafSpec"]


def test_importing_changes_no_console_setting():
    """`quiet_console` runs where trainers are built and jobs start, never at import."""
    code = (
        "import logging, warnings; "
        "import sr_lightning.utils.instantiate, sr_lightning.utils.console, sr_lightning.profiling; "
        "assert not [f for f in warnings.filters if f[1] and 'LeafSpec' in f[1].pattern], 'filter added at import'; "
        "names = ['lightning.pytorch.utilities.rank_zero', 'lightning.fabric.utilities.rank_zero', '']; "
        "assert not any(logging.getLogger(n).filters for n in names), 'a logging filter was added at import'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
