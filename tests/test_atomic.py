"""The one atomic writer (sr_lightning.utils.atomic): temp names, stale left-overs, fsync, and the disk-full error,
faked (an OSError raised inside the writer, also through torch.save) and real (RLIMIT_FSIZE gives a real EFBIG)."""

from __future__ import annotations

import ast
import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _lightning_helpers import quiet_trainer
from lightning.pytorch.callbacks import ModelCheckpoint

import sr_lightning
from sr_lightning.data.cache import ImageCache
from sr_lightning.data.scan import _write_cache
from sr_lightning.lightning.checkpoint_io import AtomicCheckpointIO
from sr_lightning.profiling import write_complexity_json
from sr_lightning.utils.atomic import (
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    full_disk_errno,
    is_temp_file,
    remove_stale_temps,
    temp_path,
)
from sr_lightning.utils.report import write_benchmark_json
from sr_lightning.utils.resume import last_checkpoints
from sr_lightning.utils.sweep_summary import write_summary, write_tables

SRC = Path(sr_lightning.__file__).parent
FULL = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota full", errno.EFBIG: "file-size limit reached"}


def dead_pid() -> int:
    """The PID of a process that has ended (and been reaped), so no live process has it for now."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def leftover(target: Path, pid: int, age_s: float = 3600, keep_suffix: bool = True) -> Path:
    """A temporary file of `target` as a writer with PID `pid` leaves it, last written `age_s` ago."""
    path = target.with_name(f".{target.name}.{pid}.deadbeef.tmp{target.suffix if keep_suffix else ''}")
    path.write_bytes(b"half")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


# -- names ---------------------------------------------------------------------------------------------------------
def test_temp_names_are_hidden_recognisable_and_keep_the_suffix_on_request(tmp_path):
    png = temp_path(tmp_path / "out.png")
    ckpt = temp_path(tmp_path / "last.ckpt", keep_suffix=False)
    assert png.parent == tmp_path and png.name.startswith(".out.png.") and png.suffix == ".png"
    assert ckpt.name.startswith(".last.ckpt.") and ckpt.name.endswith(".tmp")
    assert is_temp_file(png) and is_temp_file(ckpt) and temp_path(tmp_path / "x.png") != temp_path(tmp_path / "x.png")
    for name in ("out.png", ".out.png", "last.ckpt", "a.tmp", ".a.tmp", ".a.12.xyz.tmp", ".x.png.extracted"):
        assert not is_temp_file(tmp_path / name), name


def test_a_checkpoint_temp_is_never_taken_for_a_checkpoint(tmp_path):
    """Lightning (`last*.ckpt`) and sr_lightning.utils.resume (`last.ckpt`) look for checkpoints by name."""
    target = tmp_path / "checkpoints" / "last.ckpt"
    target.parent.mkdir()
    tmp = temp_path(target, keep_suffix=False)
    tmp.write_bytes(b"partial")
    assert tmp.suffix == ".tmp" and last_checkpoints(tmp_path) == []
    assert ModelCheckpoint(dirpath=target.parent)._find_last_checkpoints(quiet_trainer(tmp_path, [], 1, None)) == set()


# -- writes --------------------------------------------------------------------------------------------------------
def test_atomic_path_replaces_on_success_and_keeps_the_previous_file_on_error(tmp_path):
    target = tmp_path / "new" / "report.json"  # the folder is made
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".json" and is_temp_file(tmp)
        tmp.write_text("first")
    assert target.read_text() == "first"
    with pytest.raises(ValueError, match="writer failed"), atomic_path(target) as tmp:
        tmp.write_text("half of the sec")
        raise ValueError("writer failed")
    assert target.read_text() == "first" and os.listdir(target.parent) == ["report.json"]
    assert atomic_write_text(target, "é\n").read_bytes() == "é\n".encode()
    assert atomic_write_bytes(target, b"\x00\x01").read_bytes() == b"\x00\x01"
    with atomic_open(target, "w", newline="") as f:
        f.write("a\r\nb")
    assert target.read_bytes() == b"a\r\nb"
    with pytest.raises(ValueError, match="mode must be"), atomic_open(target, "ab"):
        pass


def test_atomic_open_follows_the_umask(tmp_path):
    umask = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "x.txt", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o640  # 0o666 & ~0o027, as open() would give


def test_fsync_syncs_the_file_and_then_its_folder(tmp_path, monkeypatch):
    synced: list[bool] = []  # is a directory?
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write_text(tmp_path / "a.txt", "a")
    assert synced == []  # outputs that can be made again skip it
    atomic_write_text(tmp_path / "a.txt", "b", fsync=True)
    assert synced == [False, True]


# -- left-overs ----------------------------------------------------------------------------------------------------
def test_stale_temps_of_dead_writers_are_removed_live_and_recent_ones_kept(tmp_path):
    target = tmp_path / "out.png"
    dead = dead_pid()
    stale = leftover(target, dead)
    legacy = target.with_name(f".out.{dead}.deadbeef.tmp.png")  # the name before this pattern: .<stem>...
    legacy.write_bytes(b"x")
    os.utime(legacy, (0, 0))
    recent = leftover(target, dead, age_s=1, keep_suffix=False)
    mine = leftover(target, os.getpid())  # a write of this process may be in progress in another thread
    live = leftover(target, os.getppid())  # a live process of this machine
    other_target = leftover(tmp_path / "other.png", dead)
    staging = tmp_path / f".archive.zip.{dead}.0123abcd.tmp"  # an extraction's staging folder
    (staging / "sub").mkdir(parents=True)
    os.utime(staging, (0, 0))
    (tmp_path / "user.png").write_bytes(b"keep")

    assert remove_stale_temps(target) == 2 and not stale.exists() and not legacy.exists()
    assert recent.exists() and mine.exists() and live.exists() and other_target.exists()
    assert remove_stale_temps(target, min_age_s=0) == 1 and not recent.exists()
    assert remove_stale_temps(tmp_path) == 2 and not other_target.exists() and not staging.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, live.name, "user.png"])
    assert remove_stale_temps(tmp_path / "missing" / "x.png") == 0


def test_a_checkpoint_write_removes_left_overs_of_its_target(tmp_path):
    target = tmp_path / "last.ckpt"
    old = leftover(target, dead_pid(), age_s=0, keep_suffix=False)  # a SIGKILLed earlier run: gone at once
    AtomicCheckpointIO().save_checkpoint({"global_step": 3}, target)
    assert not old.exists() and os.listdir(tmp_path) == ["last.ckpt"]
    assert torch.load(target, weights_only=True) == {"global_step": 3}


# -- disk full -----------------------------------------------------------------------------------------------------
class _FillsUp:
    """A file object whose disk fills up after `room` bytes (the OSError a real write raises)."""

    def __init__(self, f, room: int, code: int) -> None:
        self.f, self.room, self.code = f, room, code

    def write(self, data):
        if len(data) > self.room:
            raise OSError(self.code, os.strerror(self.code))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name: str):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


@pytest.fixture
def disk_fills_up(monkeypatch):
    """Every file the helper opens fills up after `room` bytes (0: at the first write)."""

    def fill(room: int = 0, code: int = errno.ENOSPC) -> None:
        real_fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda *a, **k: _FillsUp(real_fdopen(*a, **k), room, code))

    return fill


@pytest.mark.parametrize("code", sorted(FULL))
def test_disk_full_names_the_target_and_keeps_the_previous_file(tmp_path, disk_fills_up, code):
    target = tmp_path / "benchmark.json"
    target.write_text("previous")
    disk_fills_up(code=code)
    with pytest.raises(OSError) as info:
        atomic_write_text(target, "new contents")
    err = info.value
    assert err.errno == code and isinstance(err.__cause__, OSError) and err.__cause__.errno == code
    assert str(err).startswith(f"[Errno {code}] {FULL[code]} ({os.strerror(code)}) while writing {target}; ")
    assert "the previous file is intact" in str(err)
    assert target.read_text() == "previous" and os.listdir(tmp_path) == ["benchmark.json"]
    with pytest.raises(OSError, match="no partial file was left"):
        atomic_write_text(tmp_path / "fresh.json", "x")
    assert not (tmp_path / "fresh.json").exists()


def test_only_full_disk_errors_are_translated(tmp_path):
    nested = RuntimeError("unexpected pos 704 vs 598")  # torch's zip writer over the file's OSError
    nested.__context__ = OSError(errno.ENOSPC, "No space left on device")
    assert full_disk_errno(nested) == errno.ENOSPC and full_disk_errno(OSError(errno.EACCES, "denied")) is None
    with pytest.raises(PermissionError), atomic_path(tmp_path / "x") as tmp:  # not full: the error as raised
        tmp.write_text("x")
        raise PermissionError(errno.EACCES, "Permission denied")


def test_disk_full_through_the_checkpoint_plugin_and_torch_save(tmp_path, disk_fills_up):
    """torch.save's zip writer raises RuntimeError("unexpected pos ...") over the file's OSError."""
    target = tmp_path / "checkpoints" / "last.ckpt"
    plugin = AtomicCheckpointIO()
    plugin.save_checkpoint({"global_step": 1, "w": torch.zeros(1000)}, target)
    before = target.read_bytes()
    disk_fills_up(room=2000)  # some bytes reach the temp file, then the disk is full
    with pytest.raises(OSError, match=r"^\[Errno 28\] disk full \(No space left on device\) while writing") as info:
        plugin.save_checkpoint({"global_step": 2, "w": torch.ones(1000)}, target)
    assert isinstance(info.value.__cause__, RuntimeError) and str(target) in str(info.value)
    assert target.read_bytes() == before and os.listdir(target.parent) == ["last.ckpt"]


def _writers(tmp_path: Path) -> dict:
    """Every output writer of the package that goes through the helper, with its target."""
    image = tmp_path / "img.npy"
    np.save(image, np.zeros(4))
    cache = ImageCache("disk", tmp_path / "cache")
    results = {"Set5": {"images": 5, "psnr": 30.0, "ssim": 0.9}}
    return {
        "benchmark.json": (lambda: write_benchmark_json(tmp_path / "benchmark.json", results), "benchmark.json"),
        "summary.json": (lambda: write_summary(tmp_path, {"status": "completed"}), "summary.json"),
        "summary.csv": (lambda: write_tables(tmp_path, [{"run": "0", "val_psnr": 30.0}]), "summary.csv"),
        "complexity.json": (lambda: write_complexity_json({"scale": 4}, tmp_path), "complexity.json"),
        "scan cache": (lambda: _write_cache(tmp_path / "scan.json", tmp_path, {}), "scan.json"),
        "image cache": (
            lambda: cache.get(image, "decoded", lambda: np.ones((8, 8, 3), np.uint8)),
            Path("cache") / cache.entry_path(image, "decoded").name,
        ),
    }


@pytest.mark.parametrize("writer", ["benchmark.json", "summary.json", "summary.csv", "complexity.json", "scan cache",
                                    "image cache"])  # fmt: skip
def test_every_writer_says_disk_full(tmp_path, disk_fills_up, writer):
    write, target = _writers(tmp_path)[writer]
    disk_fills_up()
    with pytest.raises(OSError, match=r"disk full .* while writing .*" + str(target).replace(".", r"\.")):
        write()
    assert not [p for p in tmp_path.rglob("*") if is_temp_file(p)]


def test_real_file_size_limit_is_the_last_line(tmp_path):
    """A real EFBIG: RLIMIT_FSIZE in a subprocess (SIGXFSZ ignored, so write() fails instead of killing it)."""
    target = tmp_path / "checkpoints" / "last.ckpt"
    script = textwrap.dedent(f"""
        import resource, signal, torch
        from sr_lightning.lightning.checkpoint_io import AtomicCheckpointIO
        AtomicCheckpointIO().save_checkpoint({{"w": torch.zeros(10)}}, {str(target)!r})  # the previous file
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
        AtomicCheckpointIO().save_checkpoint({{"w": torch.zeros(1 << 16)}}, {str(target)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and last == (
        f"OSError: [Errno 27] file-size limit reached (File too large) while writing {target}; the previous file is "
        "intact; raise the limit (ulimit -f) or write to a file system allowing it"
    ), proc.stderr
    assert "unexpected pos" in proc.stderr  # torch's own error stays in the chain, above
    assert torch.load(target, weights_only=True)["w"].shape == (10,) and os.listdir(target.parent) == ["last.ckpt"]


# -- one writer ----------------------------------------------------------------------------------------------------
_MODULE_RENAMES = {("os", "replace"), ("os", "rename"), ("os", "renames"), ("shutil", "move")}


def _renames(tree: ast.AST) -> list[int]:
    """Lines that rename files: os.replace / os.rename / os.renames / shutil.move, imported names of them, and
    Path.replace(x) / Path.rename(x) (one positional argument; str.replace takes two)."""
    lines, imported = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "shutil"):
            imported |= {a.asname or a.name for a in node.names if a.name in ("replace", "rename", "renames", "move")}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        fn = node.func
        if isinstance(fn, ast.Name) and fn.id in imported:
            lines.append(node.lineno)
        elif isinstance(fn, ast.Attribute):
            owner = fn.value.id if isinstance(fn.value, ast.Name) else None
            module_rename = (owner, fn.attr) in _MODULE_RENAMES
            path_rename = fn.attr in ("replace", "rename") and len(node.args) == 1 and not node.keywords
            if module_rename or path_rename:
                lines.append(node.lineno)
    return lines


def test_no_module_renames_files_but_the_atomic_helper():
    """Every rename goes through sr_lightning.utils.atomic (atomic_path / atomic_open / move_into_place), which
    also turns a full disk into its clear error. No exceptions: data/download.py renames its verified .part file
    and sets bad files aside through move_into_place."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "utils/atomic.py":
            continue
        lines = _renames(ast.parse(path.read_text(), filename=str(path)))
        if lines:
            found[rel] = lines
    assert found == {}, f"files renamed outside sr_lightning.utils.atomic: {json.dumps(found)}"
    assert _renames(ast.parse("import os\nos.replace(a, b)\nfrom os import rename as r\nr(a, b)\np.rename(q)\n")) == [
        2,
        4,
        5,
    ]
    assert _renames(ast.parse("s.replace('a', 'b')\ndataclasses.replace(x, y=1)\n")) == []
