"""Bad data and bad files: every case fails (or is skipped, by choice) with a message naming the file, before any step.

The bad files are made in tmp_path from real photographs (the scikit-image sample data): a truncated PNG, garbage
bytes, a PNG with a damaged data stream, a float (mode F) TIFF, an LR of the wrong size, a text file named .pth, a
Lightning checkpoint of another LightningModule, an image smaller than the network's minimum input.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from _data_helpers import real_crops
from lightning.pytorch.demos.boring_classes import BoringModel
from PIL import Image
from torch.utils.data import DataLoader

from sr_lightning.archs.efdn import EFDN
from sr_lightning.archs.fdiwn import FDIWN
from sr_lightning.data import scan
from sr_lightning.data.checks import BadDataError, find_bad_images
from sr_lightning.data.datamodule import SRDataModule
from sr_lightning.data.datasets import HRFolderDataset, PairedFolderDataset, bicubic_lr
from sr_lightning.data.io import BadImageError, load_image, save_image
from sr_lightning.data.sample import sample_files
from sr_lightning.lightning.module import SRModule
from sr_lightning.utils.report import NothingEvaluatedError, report, write_benchmark_json
from sr_lightning.weights import load_weights, save_weights


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets its own check cache (never the user's ~/.cache)."""
    monkeypatch.setenv("SR_CACHE_DIR", str(tmp_path / "cache"))


def truncate(path: Path) -> Path:
    """Cut a file to half its size (a download or copy that stopped)."""
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    return path


def write_crops(folder: Path, n: int, height: int = 122, width: int = 98) -> list[Path]:
    """``n`` real-photograph crops as PNGs ``folder/img<k>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, img in enumerate(real_crops(n, height, width)):
        save_image(folder / f"img{k}.png", img)
        paths.append(folder / f"img{k}.png")
    return paths


# ------------------------------------------------------------------------------------------------ single files


def test_truncated_and_corrupt_images_name_the_file(tmp_path):
    src = sample_files("heldout")[0]  # chelsea.png
    trunc = truncate(Path(shutil.copyfile(src, tmp_path / "trunc.png")))
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    damaged = bytearray(src.read_bytes())
    damaged[len(damaged) // 2 : len(damaged) // 2 + 64] = bytes(64)  # header intact, data stream broken
    (tmp_path / "damaged.png").write_bytes(bytes(damaged))
    assert Image.open(trunc).size == (451, 300)  # the header alone looks fine: only decoding finds it
    for path, why in ((trunc, "truncated"), (garbage, "not a readable image"), (tmp_path / "damaged.png", "corrupt")):
        with pytest.raises(BadImageError, match=why) as err:
            load_image(path)
        assert str(err.value).startswith(str(path))
        verdict = scan.check_image(path)
        assert not verdict.ok and verdict.error.startswith(str(path)) and verdict.size is None
    good = scan.check_image(src)
    assert good.ok and good.size == (451, 300)


def test_unconvertible_modes_are_errors_and_supported_modes_pass(tmp_path):
    rgb = real_crops(1, 20, 24)[0]
    Image.fromarray(rgb[:, :, 0].astype(np.float32) / 255).save(tmp_path / "float.tif")  # mode F
    Image.fromarray(rgb[:, :, 0].astype(np.int32) * 1000, "I").save(tmp_path / "int32.tif")  # beyond 16 bit
    Image.fromarray(rgb).convert("LAB").save(tmp_path / "lab.tif")
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    checks = scan.scan_images(sorted(tmp_path.glob("*.*")))
    bad = {p.name: c.error for p, c in checks.items() if not c.ok}
    assert set(bad) == {"float.tif", "int32.tif", "lab.tif"}
    assert "mode F" in bad["float.tif"] and "outside 0..65535" in bad["int32.tif"] and "'LAB'" in bad["lab.tif"]
    assert all(err.startswith(str(tmp_path / name)) for name, err in bad.items())
    assert {p.name: c.size for p, c in checks.items() if c.ok} == dict.fromkeys(
        ["gray.png", "rgba.png", "palette.png", "gray16.png"], (24, 20)
    )


def test_a_file_broken_after_the_check_is_named_by_a_dataloader_worker(tmp_path):
    """The last line of defence: a file that goes bad during a run fails in the worker with its path."""
    paths = write_crops(tmp_path / "hr", 2)
    ds = HRFolderDataset(tmp_path / "hr", scale=2)
    truncate(paths[1])
    with pytest.raises(Exception, match=r"img1\.png: corrupt or truncated image"):
        list(DataLoader(ds, batch_size=1, num_workers=1))


def test_scan_cache_skips_unchanged_files_and_rechecks_changed_ones(tmp_path, monkeypatch):
    paths = write_crops(tmp_path / "hr", 5)
    decoded: list[Path] = []
    real_check = scan.check_image
    monkeypatch.setattr(scan, "check_image", lambda p: decoded.append(Path(p)) or real_check(p))
    first = scan.scan_images(paths, workers=2)
    assert sorted(decoded) == sorted(paths) and all(c.ok and c.size == (98, 122) for c in first.values())
    assert len(list((tmp_path / "cache" / "scan").glob("*.json"))) == 1  # one small file per folder
    decoded.clear()
    assert scan.scan_images(paths, workers=2) == first and decoded == []  # all from the cache
    truncate(paths[3])
    os.utime(paths[0], ns=(paths[0].stat().st_atime_ns, paths[0].stat().st_mtime_ns + 10**9))  # touched
    third = scan.scan_images(paths, workers=2)
    assert sorted(decoded) == sorted([paths[0], paths[3]])
    assert [p for p, c in third.items() if not c.ok] == [paths[3]]
    decoded.clear()
    scan.scan_images(paths, workers=2)
    assert decoded == [paths[3]]  # bad verdicts are not cached


# ------------------------------------------------------------------------------------------------ the datamodule


def test_training_policy_error_lists_every_bad_file_and_skip_trains_on_the_rest(tmp_path, caplog):
    paths = write_crops(tmp_path / "train", 6)
    truncate(paths[1])
    paths[4].write_bytes(b"not an image at all")
    val = HRFolderDataset(files=write_crops(tmp_path / "val", 1), scale=2)

    def dm(policy: str) -> SRDataModule:
        train = HRFolderDataset(tmp_path / "train", scale=2)
        return SRDataModule(train=train, val=val, scale=2, lr_patch_size=8, num_workers=0, on_bad_image=policy)

    with pytest.raises(BadDataError, match=r"^2 unusable image files \(train: 2 of 6\)") as err:
        dm("error").setup("fit")
    assert str(paths[1]) in str(err.value) and str(paths[4]) in str(err.value)
    assert "data.on_bad_image=skip" in str(err.value)

    skipping = dm("skip")
    with caplog.at_level(logging.WARNING):
        skipping.setup("fit")
    assert "skipping 2 of 6 training images" in caplog.text
    assert str(paths[1]) in caplog.text and str(paths[4]) in caplog.text
    assert skipping.train_dataset.num_images == 4
    names = {skipping.train_dataset[k]["name"] for k in range(len(skipping.train_dataset))}
    assert names == {"img0", "img2", "img3", "img5"}
    with pytest.raises(ValueError, match="on_bad_image must be one of"):
        dm("ignore")


def test_bad_validation_and_test_images_always_fail(tmp_path):
    train = HRFolderDataset(files=write_crops(tmp_path / "train", 2), scale=2)
    val_files = write_crops(tmp_path / "val", 2)
    write_crops(tmp_path / "test", 3)
    truncate(val_files[0])
    Image.fromarray(np.ones((40, 40), np.float32)).save(tmp_path / "test" / "float.tif")
    dm = SRDataModule(
        train=train,
        val=HRFolderDataset(tmp_path / "val", scale=2),
        test={"mine": HRFolderDataset(tmp_path / "test", scale=2)},
        scale=2,
        lr_patch_size=8,
        num_workers=0,
        on_bad_image="skip",  # applies to training images only
    )
    with pytest.raises(BadDataError, match=r"val: 1 of 2, test\[mine\]: 1 of 4") as err:
        dm.setup("fit")  # the test sets are checked before training too
    listed = [line.strip() for line in str(err.value).splitlines() if line.startswith("  [")]
    assert listed == [
        f"[val] {val_files[0]}: corrupt or truncated image (OSError: image file is truncated)",
        f"[test[mine]] {tmp_path / 'test' / 'float.tif'}: float image (mode F) has no defined 8-bit range, "
        "not supported",
    ]
    with pytest.raises(
        BadDataError, match=r"^1 unusable image file \(test\[mine\]: 1 of 4\): \[test\[mine\]\] .*float"
    ):
        dm.setup("test")
    # the same set as validation and test set (Set5 in data=shared_train): its bad file is listed once
    same = HRFolderDataset(tmp_path / "val", scale=2)
    dm = SRDataModule(train=train, val=same, test={"same": same}, scale=2, lr_patch_size=8, num_workers=0)
    with pytest.raises(
        BadDataError, match=r"^1 unusable image file \(val: 1 of 2, test\[same\]: 1 of 2\): \[val, test"
    ):
        dm.setup("fit")


def test_lr_of_the_wrong_size_is_named(tmp_path):
    hr = write_crops(tmp_path / "HR", 3)
    (tmp_path / "LR").mkdir()
    for p in hr:
        img = load_image(p)
        save_image(tmp_path / "LR" / f"{p.stem}x2.png", bicubic_lr(img, 2))
    save_image(tmp_path / "LR" / "img2x2.png", bicubic_lr(load_image(hr[2]), 3))  # an x3 LR under the x2 name
    ds = PairedFolderDataset(tmp_path / "HR", tmp_path / "LR", scale=2)
    dm = SRDataModule(test={"pairs": ds}, scale=2, num_workers=0)
    with pytest.raises(BadDataError, match=r"LR/img2x2\.png: size mismatch for 'img2': LR 32x40 at x2 gives 64x80"):
        dm.setup("test")


def _trainer(tmp_path: Path) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )


def test_network_minimum_input_is_true_and_enforced(tmp_path):
    # The attributes are the true minima (measured by running the networks).
    efdn = EFDN(scale=2)
    assert EFDN.min_input_size == 15
    with torch.no_grad():
        assert efdn(torch.rand(1, 3, 15, 40)).shape == (1, 3, 30, 80)
        for shape in ((14, 40), (40, 14)):
            with pytest.raises(RuntimeError):
                efdn(torch.rand(1, 3, *shape))
    fdiwn = FDIWN(scale=2)
    assert FDIWN.min_input_size == 2
    for side, finite in ((1, False), (2, True)):
        fdiwn.zero_grad()
        fdiwn(torch.rand(2, 3, side, side)).mean().backward()
        assert all(torch.isfinite(p.grad).all() for p in fdiwn.parameters() if p.grad is not None) is finite

    # Training: an LR patch below the minimum fails at setup.
    train = HRFolderDataset(files=write_crops(tmp_path / "train", 2), scale=2)
    module = SRModule(EFDN(scale=2), loss=torch.nn.L1Loss(), optimizer=torch.optim.Adam, scale=2)
    dm = SRDataModule(train=train, scale=2, lr_patch_size=14, batch_size=2, num_workers=0)
    with pytest.raises(ValueError, match=r"LR patch too small: lr_patch_size 14 .* EFDN's minimum input of 15x15"):
        _trainer(tmp_path).fit(module, datamodule=dm)
    # Test: a 28x60 HR image at x2 gives a 14x30 LR, too small for EFDN; the message names it.
    save_image(tmp_path / "test" / "tiny.png", real_crops(1, 28, 60)[0])
    write_crops(tmp_path / "test", 1)
    dm = SRDataModule(test={"t": HRFolderDataset(tmp_path / "test", scale=2)}, scale=2, num_workers=0)
    with pytest.raises(
        BadDataError, match=r"tiny\.png: LR image \(generated from this HR\) is 30x14, smaller than EFDN"
    ):
        _trainer(tmp_path).test(SRModule(EFDN(scale=2), scale=2), datamodule=dm)
    # Any network: a whole image must keep an 11x11 SSIM window after the metrics' `scale`-pixel border shave.
    save_image(tmp_path / "small" / "strip.png", real_crops(1, 16, 40)[0])  # x4: 16 - 2 * 4 = 8 rows left
    bad = find_bad_images({"test[s]": HRFolderDataset(tmp_path / "small", scale=4)}, {"test[s]": 1})
    expected = (
        f"{tmp_path / 'small' / 'strip.png'}: HR image 40x16 (mod-cropped) leaves 32x8 pixels after the 4-pixel "
        "border shave, fewer than the 11x11 SSIM window"
    )
    assert bad == {"test[s]": {0: expected}}


# ------------------------------------------------------------------------------------------------ weights, report


def test_weights_files_of_the_wrong_kind_are_named(tmp_path):
    net = EFDN(scale=2)
    (tmp_path / "notes.pth").write_text("these are not weights\n")
    (tmp_path / "empty.pth").write_bytes(b"")
    save_weights(net, tmp_path / "cut.pth")
    truncate(tmp_path / "cut.pth")
    for name in ("notes.pth", "empty.pth", "cut.pth"):
        with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / name))}: not a PyTorch weights file"):
            load_weights(net, tmp_path / name)
    torch.save({"net": net}, tmp_path / "pickled.pth")  # a whole pickled module, not a state dict
    with pytest.raises(ValueError, match=r"pickled\.pth: holds Python objects besides tensors.*Unsupported global"):
        load_weights(net, tmp_path / "pickled.pth")
    # weights of another network: the message says which one the file holds
    meta = {"model": {"_target_": "sr_lightning.archs.fdiwn.FDIWN", "scale": 2}, "scale": 2}
    fdiwn = save_weights(FDIWN(scale=2), tmp_path / "fdiwn.pth", meta)
    with pytest.raises(RuntimeError, match=r"fdiwn\.pth \(sr_lightning\) does not fit EFDN; the file holds FDIWN x2"):
        load_weights(net, fdiwn)
    # a Lightning checkpoint of some other LightningModule (no `net.` keys)
    trainer = _trainer(tmp_path)
    trainer.fit(BoringModel())
    trainer.save_checkpoint(tmp_path / "boring.ckpt")
    with pytest.raises(ValueError, match=r"boring\.ckpt: a Lightning checkpoint of another LightningModule"):
        load_weights(net, tmp_path / "boring.ckpt")


def test_no_empty_benchmark_json(tmp_path, capsys):
    assert report({}, {}, tmp_path, 4, "EFDN") is None
    with pytest.raises(NothingEvaluatedError, match="no test set was evaluated"):
        write_benchmark_json(tmp_path / "benchmark.json", {})
    row = {"psnr": float("nan"), "ssim": float("nan"), "images": 0}
    with pytest.raises(NothingEvaluatedError, match="no image was scored in test set.s. Set5"):
        report({"Set5": row}, {}, tmp_path, 4, "EFDN")
    assert not (tmp_path / "benchmark.json").exists()


# ------------------------------------------------------------------------------------------------ entry points


def run_entry(module: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``python -m <module> <overrides>`` as a user would; returns the completed process (any exit code)."""
    env = {**os.environ, "SR_CACHE_DIR": str(cwd / "cache"), "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", module, *overrides], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def make_shared(root: Path) -> Path:
    """A stand-in shared folder: data/train/{T91,BSD200} and data/benchmark/Set5/HR, all real-photograph crops."""
    write_crops(root / "data" / "train" / "T91", 3)
    write_crops(root / "data" / "train" / "BSD200", 3)
    write_crops(root / "data" / "benchmark" / "Set5" / "HR", 2, 64, 64)
    return root


@pytest.mark.slow
def test_train_entry_point_fails_before_training_and_skip_trains(tmp_path):
    shared = make_shared(tmp_path / "shared")
    bad = truncate(shared / "data" / "train" / "BSD200" / "img1.png")
    args = (
        "data=shared_train",
        f"paths.shared_dir={shared}",
        "scale=2",
        "test_sets=[Set5]",
        "test=false",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0",
        "stage.val_every_n_steps=2",
        "stage.batch_size=2",
        "stage.lr_patch_size=16",
        "data.num_workers=2",
    )
    proc = run_entry("sr_lightning.train", *args, f"hydra.run.dir={tmp_path / 'error'}", cwd=tmp_path)
    assert proc.returncode != 0
    assert f"1 unusable image file (train: 1 of 6): [train] {bad}: corrupt or truncated image" in proc.stderr
    assert not (tmp_path / "error" / "checkpoints").exists() and "train/loss" not in proc.stdout + proc.stderr

    run_dir = tmp_path / "skip"
    proc = run_entry("sr_lightning.train", *args, "data.on_bad_image=skip", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipping 1 of 6 training images" in proc.stdout + proc.stderr and str(bad) in proc.stdout + proc.stderr
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 2


@pytest.mark.slow
def test_test_entry_point_fails_on_missing_sets_and_bad_files(tmp_path):
    shared = make_shared(tmp_path / "shared")
    weights = save_weights(EFDN(scale=2), tmp_path / "w.pth")
    common = ("model=efdn", "model.conv3x3=null", "scale=2", f"weights={weights}", "test_sets=[Set5]")
    misspelt = shared / "data" / "benchmrk"
    proc = run_entry("sr_lightning.test", *common, f"paths.benchmark_dir={misspelt}", "hydra.run.dir=a", cwd=tmp_path)
    assert proc.returncode != 0 and f"benchmark_dir {misspelt} not found: cannot evaluate" in proc.stderr
    proc = run_entry("sr_lightning.test", *common[:-1], "test_sets=[]", "hydra.run.dir=b", cwd=tmp_path)
    assert proc.returncode != 0 and "nothing to evaluate" in proc.stderr

    bad = truncate(shared / "data" / "benchmark" / "Set5" / "HR" / "img0.png")
    bench = f"paths.benchmark_dir={shared / 'data' / 'benchmark'}"
    proc = run_entry("sr_lightning.test", *common, bench, "hydra.run.dir=c", cwd=tmp_path)
    assert proc.returncode != 0 and f"[test[Set5]] {bad}: corrupt or truncated image" in proc.stderr
    assert not any(tmp_path.glob("*/benchmark.json"))

    shutil.copyfile(sample_files("heldout")[0], bad)  # a good image again: the same command now succeeds
    proc = run_entry("sr_lightning.test", *common, bench, "hydra.run.dir=d", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "d" / "benchmark.json").read_text())["sets"]["Set5"]["images"] == 2
