"""Datasets (folder pairs, HR-only, benchmark, DIV2K/Flickr2K/DF2K, embedded samples) and the image cache."""

from __future__ import annotations

import os
import pickle
import shutil
import socket

import numpy as np
import pytest
import torch
from _data_helpers import make_div2k, make_flickr2k, real_crops, to_u8, write_set
from PIL import Image

from sr_lightning.data.benchmark import BenchmarkDataset, available_sets
from sr_lightning.data.cache import ImageCache
from sr_lightning.data.datasets import HRFolderDataset, PairedFolderDataset, bicubic_lr
from sr_lightning.data.div2k import DF2K, DIV2K, Flickr2K, parse_index_range
from sr_lightning.data.io import load_image, save_image
from sr_lightning.data.sample import SAMPLE_SPLITS, SampleImages, sample_files
from sr_lightning.utils.atomic import is_temp_file

# ---------------------------------------------------------------- benchmark sets (real shared data)


@pytest.mark.shared
@pytest.mark.parametrize("name,count", [("Set5", 5), ("Set14", 14)])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_benchmark_uses_official_lr_with_right_sizes(benchmark_dir, name, count, scale):
    ds = BenchmarkDataset(benchmark_dir, name, scale)
    assert len(ds) == count and ds.lr_source == "official"
    for i, item in enumerate(ds.items):
        assert item.lr == benchmark_dir / name / "LR_bicubic" / f"X{scale}" / f"{item.name}x{scale}.png"
        w, h = Image.open(item.hr).size
        assert ds.hr_size(i) == (h - h % scale, w - w % scale)
    sample = ds[0]
    lr, hr = sample["lr"], sample["hr"]
    assert lr.dtype == hr.dtype == torch.float32 and lr.shape[0] == hr.shape[0] == 3
    assert hr.shape[1:] == (lr.shape[1] * scale, lr.shape[2] * scale)
    assert float(lr.min()) >= 0.0 and float(hr.max()) <= 1.0


@pytest.mark.shared
def test_set14_bridge_becomes_three_identical_channels(benchmark_dir):
    assert Image.open(benchmark_dir / "Set14" / "HR" / "bridge.png").mode == "L"
    ds = BenchmarkDataset(benchmark_dir, "Set14", 4)
    item = ds[ds.names.index("bridge")]
    assert item["hr"].shape == (3, 512, 512) and item["lr"].shape == (3, 128, 128)
    assert torch.equal(item["hr"][0], item["hr"][1]) and torch.equal(item["hr"][1], item["hr"][2])


@pytest.mark.shared
@pytest.mark.parametrize("name,scales", [("Set5", (2, 3, 4)), ("Set14", (3, 4))])
def test_hr_only_generation_equals_official_lr(benchmark_dir, name, scales):
    for s in scales:
        official = BenchmarkDataset(benchmark_dir, name, s, lr="official")
        generated = HRFolderDataset(benchmark_dir / name / "HR", scale=s, cache="none")
        assert generated.lr_source == "generated" and generated.names == official.names
        for i in range(len(official)):
            a, b = official[i], generated[i]
            assert torch.equal(a["hr"], b["hr"])
            assert torch.equal(a["lr"], b["lr"]), f"{name} {a['name']} x{s}: generated LR != official"


@pytest.mark.shared
def test_benchmark_missing_set_lists_existing(benchmark_dir):
    assert {"Set5", "Set14"} <= set(available_sets(benchmark_dir))
    with pytest.raises(FileNotFoundError, match=r"Urban100.*Set14, Set5"):
        BenchmarkDataset(benchmark_dir, "Urban100", 4)


@pytest.mark.shared
def test_benchmark_mixed_lr_when_some_official_files_are_missing(benchmark_dir, tmp_path):
    shutil.copytree(benchmark_dir / "Set5", tmp_path / "Set5")
    (tmp_path / "Set5" / "LR_bicubic" / "X3" / "birdx3.png").unlink()
    ds = BenchmarkDataset(tmp_path, "Set5", 3)
    assert ds.lr_source == "mixed"
    bird = ds.names.index("bird")
    assert ds.items[bird].lr is None
    official = load_image(benchmark_dir / "Set5" / "LR_bicubic" / "X3" / "birdx3.png")
    np.testing.assert_array_equal(ds.load_pair(bird)[0], official)
    with pytest.raises(FileNotFoundError, match="birdx3.png"):
        BenchmarkDataset(tmp_path, "Set5", 3, lr="official")
    shutil.rmtree(tmp_path / "Set5" / "LR_bicubic" / "X4")
    assert BenchmarkDataset(tmp_path, "Set5", 4).lr_source == "generated"


# ---------------------------------------------------------------- folder datasets (stand-ins in tmp_path)


def test_paired_folder_pairs_and_mod_crops(tmp_path):
    images = write_set(tmp_path / "HR", tmp_path / "LR", ["a", "b"], (3,))
    ds = PairedFolderDataset(tmp_path / "HR", tmp_path / "LR" / "X3", 3)
    assert ds.names == ["a", "b"] and ds.lr_source == "official"
    item = ds[0]
    assert item["hr"].shape == (3, 120, 96) and item["lr"].shape == (3, 40, 32)  # 122x98 mod-cropped
    hr_u8 = to_u8(item["hr"]).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(hr_u8, images["a"][:120, :96])


def test_paired_folder_errors(tmp_path):
    write_set(tmp_path / "HR", tmp_path / "LR", ["a", "b", "c"], (2,))
    (tmp_path / "LR" / "X2" / "bx2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 HR image\(s\) have no LR partner.*bx2.png"):
        PairedFolderDataset(tmp_path / "HR", tmp_path / "LR" / "X2", 2)
    with pytest.raises(FileNotFoundError, match="LR folder not found"):
        PairedFolderDataset(tmp_path / "HR", tmp_path / "nope", 2)
    # a partner of the wrong size: 3x LR files used at scale 2
    write_set(tmp_path / "HR2", tmp_path / "LR2", ["a"], (3,))
    os.rename(tmp_path / "LR2" / "X3" / "ax3.png", tmp_path / "LR2" / "X3" / "ax2.png")
    ds = PairedFolderDataset(tmp_path / "HR2", tmp_path / "LR2" / "X3", 2)
    with pytest.raises(ValueError, match=r"size mismatch for 'a'.*mod-cropped HR"):
        ds[0]


def test_hr_folder_generates_matlab_bicubic(tmp_path):
    images = write_set(tmp_path / "HR", None, ["x", "y"], ())
    extra = tmp_path / "extra.png"
    save_image(extra, real_crops(3)[2])
    ds = HRFolderDataset(tmp_path / "HR", files=[extra], scale=4)
    assert ds.names == ["x", "y", "extra"] and ds.lr_source == "generated"
    lr, hr, _ = ds.load_pair(0)
    np.testing.assert_array_equal(hr, images["x"][:120, :96])
    np.testing.assert_array_equal(lr, bicubic_lr(images["x"], 4))
    assert lr.shape == (30, 24, 3)
    with pytest.raises(ValueError, match="needs hr_dir or files"):
        HRFolderDataset(scale=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        HRFolderDataset(tmp_path / "empty", scale=4)


def test_div2k_layout_official_and_generated(tmp_path):
    make_div2k(tmp_path, lr_scales=(2,))
    train2 = DIV2K(tmp_path, "train", 2)
    assert train2.names == ["0001", "0002", "0003"] and train2.lr_source == "official"
    assert train2.items[0].lr == tmp_path / "DIV2K/DIV2K_train_LR_bicubic/X2/0001x2.png"
    valid4 = DIV2K(tmp_path / "DIV2K", "valid", 4)  # root may be the DIV2K folder itself
    assert valid4.names == ["0801", "0802"] and valid4.lr_source == "generated"
    assert valid4[1]["lr"].shape == (3, 30, 24)
    # index ranges span the train and valid folders, as EDSR's data_range does
    assert DIV2K(tmp_path, scale=2, index_range="2-801").names == ["0002", "0003", "0801"]
    assert DIV2K(tmp_path, scale=2, index_range=[801, 900]).names == ["0801", "0802"]
    assert parse_index_range((1, 800)) == (1, 800)
    # a partial LR folder is an error, not a silent fallback
    (tmp_path / "DIV2K/DIV2K_train_LR_bicubic/X2/0002x2.png").unlink()
    with pytest.raises(FileNotFoundError, match="0002x2.png"):
        DIV2K(tmp_path, "train", 2)
    assert DIV2K(tmp_path, "train", 2, lr="generated").lr_source == "generated"
    with pytest.raises(FileNotFoundError, match="official LR folder not found"):
        DIV2K(tmp_path, "train", 3, lr="official")
    with pytest.raises(FileNotFoundError, match="DIV2K_train_HR"):
        DIV2K(tmp_path / "missing", "train", 2)


def test_flickr2k_and_df2k(tmp_path):
    make_div2k(tmp_path, lr_scales=(2,))
    make_flickr2k(tmp_path, lr_scales=(2,))
    fl = Flickr2K(tmp_path, 2)
    assert fl.names == ["000001", "000002"] and fl.lr_source == "official"
    df = DF2K(tmp_path, 2, div2k_range=(1, 800))
    assert df.names == ["0001", "0002", "0003", "000001", "000002"] and df.lr_source == "official"
    df4 = DF2K(tmp_path, 4)
    assert len(df4) == 5 and df4.lr_source == "generated"
    item = df4[4]
    assert item["name"] == "000002" and item["hr"].shape == (3, 120, 96) and item["lr"].shape == (3, 30, 24)


# ---------------------------------------------------------------- embedded sample data


def test_sample_images_load_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("sample data must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    train, held = SampleImages("train", 4), SampleImages("val", 4)
    assert len(train) == 10 and held.names == ["chelsea", "camera", "coins"] and held.split == "heldout"
    assert not set(train.names) & set(held.names) and "motorcycle_right" not in held.names
    coins = held[2]  # a gray photograph, replicated to RGB; 384x303 mod-cropped to 384x300
    assert coins["hr"].shape == (3, 300, 384) and coins["lr"].shape == (3, 75, 96)
    assert all(p.is_file() for s in SAMPLE_SPLITS for p in sample_files(s))


def test_sample_images_clear_error_without_scikit_image(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "skimage" else real(n, *a))
    with pytest.raises(ModuleNotFoundError, match="scikit-image"):
        SampleImages("train", 4)
    with pytest.raises(ValueError, match="unknown sample split"):
        sample_files("bogus")


# ---------------------------------------------------------------- cache


def _copy_sample(tmp_path, name="chelsea.png"):
    dst = tmp_path / "img" / name
    dst.parent.mkdir(exist_ok=True)
    shutil.copy2(next(p for p in sample_files("heldout") if p.name == name), dst)
    return dst


@pytest.mark.parametrize("scale", [3, 4])
def test_cache_modes_give_identical_arrays(tmp_path, scale):
    src = _copy_sample(tmp_path)
    pairs = {}
    for mode in ("none", "memory", "disk"):
        ds = HRFolderDataset(files=[src], scale=scale, cache=mode, cache_dir=tmp_path / "cache")
        first, again = ds.load_pair(0), ds.load_pair(0)
        for a, b in zip(first[:2], again[:2]):
            np.testing.assert_array_equal(a, b)
        pairs[mode] = first
        assert ds.cache.misses == {"none": 4, "memory": 2, "disk": 2}[mode]
    for mode in ("memory", "disk"):
        for a, b in zip(pairs["none"][:2], pairs[mode][:2]):
            assert a.dtype == b.dtype == np.uint8
            np.testing.assert_array_equal(a, b)
    assert isinstance(pairs["disk"][1].base, np.memmap) or isinstance(pairs["disk"][1], np.memmap)


def test_disk_cache_is_reused_and_invalidated(tmp_path):
    src = _copy_sample(tmp_path)
    cache_dir = tmp_path / "cache"
    HRFolderDataset(files=[src], scale=4, cache="disk", cache_dir=cache_dir).load_pair(0)
    entries = sorted(p.name for p in cache_dir.iterdir())
    assert len(entries) == 2 and all(e.endswith(".npy") for e in entries)  # decoded HR + bicubic_x4 LR
    fresh = HRFolderDataset(files=[src], scale=4, cache="disk", cache_dir=cache_dir)
    lr_before, hr_before, _ = fresh.load_pair(0)
    assert fresh.cache.misses == 0  # a new process/dataset reuses the files
    lr_before, hr_before = np.array(lr_before), np.array(hr_before)
    # The key follows the file's mtime and size (and the tag), not only its path.
    key = ImageCache.key(src, "decoded")
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert ImageCache.key(src, "decoded") != key != ImageCache.key(src, "bicubic_x4")
    # Replace the source image (new content, later mtime): the stale entries must not be used.
    save_image(src, np.ascontiguousarray(load_image(src)[::-1]))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    changed = HRFolderDataset(files=[src], scale=4, cache="disk", cache_dir=cache_dir)
    lr_after, hr_after, _ = changed.load_pair(0)
    assert changed.cache.misses == 2
    np.testing.assert_array_equal(np.asarray(hr_after), load_image(src)[:300, :448])
    assert not np.array_equal(np.asarray(lr_after), lr_before)
    assert len(list(cache_dir.iterdir())) == 4 and not [p for p in cache_dir.iterdir() if is_temp_file(p)]  # atomic


def test_memory_cache_is_not_pickled_into_workers(tmp_path):
    src = _copy_sample(tmp_path)
    ds = HRFolderDataset(files=[src], scale=2, cache="memory")
    ds.load_pair(0)
    assert len(ds.cache._memory) == 2
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.cache._memory == {} and clone.cache.mode == "memory"
    with pytest.raises(ValueError, match="cache must be one of"):
        ImageCache("ram")
