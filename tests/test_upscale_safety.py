"""`upscale` never destroys a user's file (issue 19): every output planned before the network runs, no two inputs
onto one file, no output over an input, temporary files never taken as inputs, every input route reporting a
missing file, bounded memory, and outputs that keep the input's ICC profile, frames and bit depth (or say so).

Runs `run(cfg)` in-process with the packaged config and a tiny FSRCNN x2 (the official EFDN x4 where the real
network matters); one subprocess checks the command line's exit code and message."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from compose import compose_cfg
from PIL import Image, ImageCms, ImageOps

from sr_lightning.inference import pipeline
from sr_lightning.inference.images import _orient, read_picture
from sr_lightning.inference.loading import load_model
from sr_lightning.inference.plan import PlanError
from sr_lightning.inference.upscaler import upscale_image
from sr_lightning.upscale import run

EFDN_X4 = "efdn_x4_official.pth"
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
# a profile blob that says it describes CMYK colours (header bytes 16..20): what a CMYK JPEG carries
CMYK_ICC = SRGB[:16] + b"CMYK" + SRGB[20:]
DEAD_PID = 99_999_999  # above Linux's pid_max: no live process has it


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small FSRCNN x2 weights file that describes itself (metadata), so `upscale` needs nothing else."""
    from sr_lightning.archs.fsrcnn import FSRCNN
    from sr_lightning.weights import save_weights

    torch.manual_seed(0)
    options = {"feature_channels": 8, "shrink_channels": 4, "mapping_layers": 1, "conv3x3": None}
    net = FSRCNN(scale=2, **options)
    meta = {"model": {"_target_": "sr_lightning.archs.fsrcnn.FSRCNN", **options}, "scale": 2}
    return save_weights(net, tmp_path_factory.mktemp("tiny") / "fsrcnn_x2.pth", meta)


def pixels(h: int = 12, w: int = 14, seed: int = 0, channels: int = 3) -> np.ndarray:
    shape = (h, w, channels) if channels > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def save(path: Path, array: np.ndarray | None = None, **options: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels() if array is None else array).save(path, **options)
    return path


def upscale(weights: Path, tmp_path: Path, *overrides: str) -> dict:
    """`run(cfg)` of the packaged upscale config, as `python -m sr_lightning.upscale` composes it."""
    cfg = compose_cfg("upscale", [f"weights={weights}", *overrides], tmp_path / "run")
    return run(cfg)


def statuses(summary: dict) -> dict[str, str]:
    return {Path(r["input"]).name: r["status"] for r in summary["images"]}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- planning: collisions, inputs kept, folders ------------------------------------------------------------------


def test_inputs_that_would_write_one_file_stop_the_run(tiny_weights, tmp_path):
    """Before: one output for each group below, every input reported ok. Now: an error listing the group, nothing
    written; name='{stem}_{ext}_x{scale}' separates inputs that differ by extension."""
    listing = tmp_path / "list.txt"
    save(tmp_path / "a" / "img.png", pixels(seed=1))
    save(tmp_path / "b" / "img.png", pixels(seed=2))
    listing.write_text("a/img.png\nb/img.png\n")
    photos = tmp_path / "photos"
    for suffix in ("png", "jpg", "tif"):
        save(photos / f"photo.{suffix}")
    anims = tmp_path / "anims"
    save(anims / "anim.png")
    save(anims / "anim.gif", pixels(seed=3))  # one frame: a GIF that upscale reads (as PNG output)
    cases = [
        (f"input={listing}", [], ["img_x2.png <- ", "a/img.png", "b/img.png"]),
        (f"input={photos}", ["format=png"], ["photo_x2.png <- ", "photo.jpg", "photo.png", "photo.tif"]),
        (f"input={anims}", [], ["anim_x2.png <- ", "anim.gif", "anim.png"]),
    ]
    for source, extra, listed in cases:
        out = tmp_path / "out"
        with pytest.raises(PlanError, match="would each be written by several inputs") as err:
            upscale(tiny_weights, tmp_path, source, f"output={out}", *extra)
        assert all(s in str(err.value) for s in listed), str(err.value)
        assert not out.exists() or not snapshot(out)
    summary = upscale(tiny_weights, tmp_path, f"input={photos}", f"output={tmp_path / 'out'}", "format=png",
                      "name='{stem}_{ext}_x{scale}'")  # fmt: skip
    assert summary["counts"] == {"ok": 3}
    assert sorted(snapshot(tmp_path / "out")) == ["photo_jpg_x2.png", "photo_png_x2.png", "photo_tif_x2.png"]


def test_an_output_over_an_input_is_refused(tiny_weights, tmp_path):
    """Before: name='{stem}' with output= the input's folder replaced the photo with its upscaled copy. Now refused
    (through symlinks, `..` and hard links too); overwrite=true lets an output replace its own input only."""
    photos = tmp_path / "photos"
    photo = save(photos / "photo.png")
    before = snapshot(photos)
    (tmp_path / "link").symlink_to(photos)
    (photos / "sub").mkdir()
    for output in (photos, tmp_path / "link", photos / "sub" / ".."):
        with pytest.raises(PlanError, match=r"would overwrite input files") as err:
            upscale(tiny_weights, tmp_path, f"input={photo}", f"output={output}", "name='{stem}'")
        assert "its own input; overwrite=true allows that" in str(err.value)
        assert snapshot(photos) == before
    linked = tmp_path / "hard"
    linked.mkdir()
    os.link(photo, linked / "photo.png")
    with pytest.raises(PlanError, match=r"would overwrite input files"):
        upscale(tiny_weights, tmp_path, f"input={photo}", f"output={linked}", "name='{stem}'")
    assert snapshot(photos) == before

    summary = upscale(tiny_weights, tmp_path, f"input={photo}", f"output={photos}", "name='{stem}'", "overwrite=true")
    assert summary["counts"] == {"ok": 1}
    assert Image.open(photo).size == (28, 24)  # replaced by its x2 output, as asked


def test_an_output_over_another_input_is_refused_even_with_overwrite(tiny_weights, tmp_path):
    """`a.png`'s output `a_x2.png` is another input of the run (an earlier output left in the input folder): it
    may not have been read yet, so overwrite=true does not allow it."""
    photos = tmp_path / "photos"
    save(photos / "a.png", pixels(seed=1))
    save(photos / "a_x2.png", pixels(seed=2))
    before = snapshot(photos)
    for extra in ([], ["overwrite=true"]):
        with pytest.raises(PlanError, match="another input of this run"):
            upscale(tiny_weights, tmp_path, f"input={photos}", f"output={photos}", *extra)
        assert snapshot(photos) == before


def test_unwritable_output_folder_stops_the_run_before_the_network(tiny_weights, tmp_path, monkeypatch):
    def never(*_args: object) -> None:
        raise AssertionError("the network ran")

    monkeypatch.setattr("sr_lightning.upscale.run_pipeline", never)
    photo = save(tmp_path / "photo.png")
    blocker = tmp_path / "file.png"
    blocker.write_bytes(b"not a folder")
    with pytest.raises(PlanError, match=rf"output folder {blocker / 'out'} is not writable"):
        upscale(tiny_weights, tmp_path, f"input={photo}", f"output={blocker / 'out'}")
    if os.geteuid() != 0:  # root writes through permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(PlanError, match=rf"output folder {locked} is not writable"):
            upscale(tiny_weights, tmp_path, f"input={photo}", f"output={locked}")


# --- inputs: temporary and hidden files, missing files -----------------------------------------------------------


def test_temporary_files_are_never_inputs_and_stale_ones_are_removed(tiny_weights, tmp_path):
    """Before: a killed run's `.photo_x2.png.<pid>.<hex>.tmp.png` was collected as an input by the next run and
    failed it. Now temporary and hidden files are skipped, and the stale ones (dead writer, older than
    `STALE_AFTER_S`) are removed from the output folder; a live writer's file is left alone."""
    photos = tmp_path / "photos"
    save(photos / "photo.png")
    stale = photos / f".photo_x2.png.{DEAD_PID}.deadbeef.tmp.png"
    stale.write_bytes((photos / "photo.png").read_bytes()[:100])  # cut short by the kill
    old = time.time() - 3600
    os.utime(stale, (old, old))
    live = photos / f".other_x2.png.{os.getpid()}.0123abcd.tmp.png"
    live.write_bytes(b"a write in progress")
    save(photos / ".thumbnail.png")
    summary = upscale(tiny_weights, tmp_path, f"input={photos}", f"output={photos}")
    assert statuses(summary) == {"photo.png": "ok"}
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in photos.iterdir() if not p.name.startswith(".")) == ["photo.png", "photo_x2.png"]


def test_missing_inputs_are_reported_on_every_route(tiny_weights, tmp_path, monkeypatch):
    """Before: a missing file in input=[a,b], or a missing single input=, aborted the run with a traceback and
    wrote nothing. Now, as for a .txt list: reported by name, the rest go on, the run fails (exit 1)."""
    photo = save(tmp_path / "a.png")
    missing = tmp_path / "gone.png"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photo}\n{missing}\n")
    for source in (f"input=[{photo},{missing}]", f"input={listing}"):
        out = tmp_path / "out"
        summary = upscale(tiny_weights, tmp_path, source, f"output={out}")
        assert statuses(summary) == {"a.png": "ok", "gone.png": "failed"}
        assert "image file not found" in summary["images"][1]["error"]
        assert (out / "a_x2.png").is_file()

    def no_network(_cfg: object) -> None:
        raise AssertionError("the network was loaded for a run with nothing to do")

    monkeypatch.setattr("sr_lightning.upscale.make_runner", no_network)
    summary = upscale(tiny_weights, tmp_path, f"input={missing}", f"output={tmp_path / 'out2'}")
    assert summary["counts"] == {"failed": 1} and summary["model"] is None


def test_cli_single_missing_input_exits_1_with_its_name(tiny_weights, tmp_path):
    missing = tmp_path / "not here.png"
    proc = subprocess.run(
        [sys.executable, "-m", "sr_lightning.upscale", f"weights={tiny_weights}", f"input='{missing}'",
         f"output={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log[-3000:]
    assert f"failed: {missing} (FileNotFoundError: image file not found: {missing})" in log
    assert "Traceback" not in log and "Error executing job" not in log


# --- memory ------------------------------------------------------------------------------------------------------


def test_pending_writes_are_bounded(tiny_weights, tmp_path, monkeypatch):
    """With a slow encoder the network waits while 2 x io_threads outputs wait to be encoded (before: every output
    of the run could wait in memory)."""
    photos = tmp_path / "photos"
    for i in range(6):
        save(photos / f"{i}.png", pixels(seed=i))
    lock = threading.Lock()
    waiting = {"now": 0, "max": 0}
    network, writer = pipeline.upscale_image, pipeline.write_picture

    def counted(*args: object, **kwargs: object) -> np.ndarray:
        out = network(*args, **kwargs)
        with lock:
            waiting["now"] += 1
            waiting["max"] = max(waiting["max"], waiting["now"])
        return out

    def slow(*args: object) -> list[str]:
        time.sleep(0.25)  # far slower than the network on this image size
        notes = writer(*args)
        with lock:
            waiting["now"] -= 1
        return notes

    monkeypatch.setattr(pipeline, "upscale_image", counted)
    monkeypatch.setattr(pipeline, "write_picture", slow)
    summary = upscale(tiny_weights, tmp_path, f"input={photos}", f"output={tmp_path / 'out'}", "io_threads=1")
    assert summary["counts"] == {"ok": 6}
    assert waiting["max"] == 2  # reached, never passed


def test_an_output_too_large_for_memory_fails_that_image_only(tiny_weights, tmp_path):
    """8x8 -> 16x16 needs 16*16*(12 + 3) B (float32 RGB output + uint8 RGB result), 40x40 -> 80x80 needs 96,000 B:
    a 0.05 MiB budget (52,429 B) passes the first and fails the second with a message; the others go on."""
    photos = tmp_path / "photos"
    save(photos / "small.png", pixels(8, 8))
    save(photos / "large.png", pixels(40, 40))
    assert pipeline.output_bytes((40, 40, 3), np.dtype(np.uint8), 2) == 96_000
    summary = upscale(tiny_weights, tmp_path, f"input={photos}", f"output={tmp_path / 'out'}", "max_memory_mb=0.05")
    assert statuses(summary) == {"large.png": "failed", "small.png": "ok"}
    error = summary["images"][0]["error"]
    assert error.startswith("OutputTooLargeError: its 80x80 output needs about 0.0916 MiB") and "max_memory_mb" in error
    assert not (tmp_path / "out" / "large_x2.png").exists()


# --- fidelity: ICC profile, frames, bit depth --------------------------------------------------------------------


def test_icc_profiles_are_copied_or_warned(tiny_weights, tmp_path):
    photos = tmp_path / "photos"
    save(photos / "p.png", icc_profile=SRGB)
    save(photos / "j.jpg", quality=95, icc_profile=SRGB)
    save(photos / "t.tif", icc_profile=SRGB)
    save(photos / "g.png", pixels(channels=1), icc_profile=SRGB[:16] + b"GRAY" + SRGB[20:])
    Image.fromarray(pixels()).convert("CMYK").save(photos / "c.jpg", icc_profile=CMYK_ICC)
    out = tmp_path / "out"
    summary = upscale(tiny_weights, tmp_path, f"input={photos}", f"output={out}")
    assert summary["counts"] == {"ok": 5}
    for name in ("p_x2.png", "j_x2.jpg", "t_x2.tif"):
        assert Image.open(out / name).info.get("icc_profile") == SRGB, name
    assert Image.open(out / "g_x2.png").info.get("icc_profile")[16:20] == b"GRAY"
    assert "icc_profile" not in Image.open(out / "c_x2.jpg").info
    warned = {Path(r["input"]).name: r.get("warnings", []) for r in summary["images"]}
    assert warned["c.jpg"] == ["ICC profile for CMYK colours not copied (the output's pixels are RGB)"]
    assert not any(warned[n] for n in ("p.png", "j.jpg", "t.tif", "g.png"))

    summary = upscale(tiny_weights, tmp_path, f"input={photos / 'p.png'}", f"output={out}", "format=bmp")
    assert summary["images"][0]["warnings"] == [
        "ICC profile not copied (BMP output cannot hold it; format=png keeps it)"
    ]


def test_animations_are_refused_not_cut_to_one_frame(tiny_weights, tmp_path):
    """Before: an animated GIF was written as its first frame, reported ok."""
    photos = tmp_path / "photos"
    frames = [Image.fromarray(pixels(seed=i)) for i in range(3)]
    photos.mkdir()
    frames[0].save(photos / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(photos / "anim_png.png", save_all=True, append_images=frames[1:])  # APNG
    save(photos / "still.png")
    summary = upscale(tiny_weights, tmp_path, f"input={photos}", f"output={tmp_path / 'out'}")
    assert statuses(summary) == {"anim.gif": "failed", "anim_png.png": "failed", "still.png": "ok"}
    for record in summary["images"][:2]:
        assert "with 3 frames (an animation or pages)" in record["error"]
    assert sorted(snapshot(tmp_path / "out")) == ["still_x2.png"]


def png16_rgb(path: Path, array: np.ndarray) -> Path:
    """A 16-bit RGB PNG (no declared dependency writes one): signature, IHDR (depth 16, colour type 2), IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = array.shape
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


def test_sixteen_bits_are_kept_or_warned(tiny_weights, tmp_path):
    """16-bit RGB TIFF: read by tifffile, written as 16-bit TIFF (before: 8-bit, silently). 16-bit RGB PNG: 8 bits
    with a warning (Pillow, imageio and skimage.io all read it as 8 bits). 16-bit gray: 16-bit PNG; an 8-bit
    format gets 8 bits with a warning (before: BMP failed, WebP clipped every value above 255 to white)."""
    import tifffile

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(5)
    rgb16 = rng.integers(0, 65536, (12, 14, 3), dtype=np.uint16)
    tifffile.imwrite(photos / "deep.tif", rgb16, photometric="rgb", iccprofile=SRGB)
    png16_rgb(photos / "deep_png.png", rgb16)
    gray16 = rng.integers(0, 65536, (12, 14), dtype=np.uint16)
    Image.fromarray(gray16).save(photos / "gray.png")
    out = tmp_path / "out"
    summary = upscale(tiny_weights, tmp_path, f"input={photos}", f"output={out}")
    assert summary["counts"] == {"ok": 3}
    model = load_model(tiny_weights)
    written = tifffile.imread(out / "deep_x2.tif")
    assert written.dtype == np.uint16 and np.array_equal(
        written, upscale_image(model, tifffile.imread(photos / "deep.tif"))
    )
    assert Image.open(out / "deep_x2.tif").info.get("icc_profile") == SRGB
    warned = {Path(r["input"]).name: r.get("warnings", []) for r in summary["images"]}
    assert warned["deep_png.png"] == [
        "16 bits per channel read as 8 bits (no installed reader keeps this 16-bit PNG layout; a 16-bit RGB or RGBA "
        "TIFF input keeps 16 bits)"
    ]
    assert not warned["deep.tif"] and not warned["gray.png"]
    gray_out = Image.open(out / "gray_x2.png")
    assert gray_out.mode == "I;16" and np.array_equal(np.asarray(gray_out), upscale_image(model, gray16))

    summary = upscale(tiny_weights, tmp_path, f"input={photos / 'gray.png'}", f"output={out}", "format=bmp")
    assert summary["images"][0]["warnings"] == [
        "16-bit gray written as 8 bits (BMP output; format=png or tif keeps 16 bits)"
    ]
    # rounded from the 16-bit output as the metrics round (v / 257 has no ties), not clipped at 255
    expected = np.rint(np.asarray(gray_out) / 257)
    assert np.array_equal(np.asarray(Image.open(out / "gray_x2.bmp")), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_sixteen_bit_tiff_orientation_matches_pillow(tmp_path, orientation):
    """The tifffile route applies the EXIF orientation as Pillow's `exif_transpose` does (checked on 8-bit pixels,
    which Pillow reads itself)."""
    import tifffile

    rgb = pixels(3, 5)
    exif = Image.Exif()
    exif[0x0112] = orientation
    save(tmp_path / "o.png", rgb, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    assert np.array_equal(_orient(rgb, orientation), expected)
    deep = rgb.astype(np.uint16) * 257 + 1
    tifffile.imwrite(tmp_path / "o.tif", deep, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    picture = read_picture(tmp_path / "o.tif")
    assert picture.pixels.dtype == np.uint16 and np.array_equal((picture.pixels - 1) // 257, expected)


# --- through the official network ------------------------------------------------------------------------------


@pytest.mark.shared
def test_official_efdn_keeps_a_photo_unless_told_and_its_icc_profile(official_weights_dir, benchmark_dir, tmp_path):
    """A real Set5 LR image with an ICC profile, upscaled by the official EFDN x4 into its own folder with
    name='{stem}': refused (the photo intact), then with overwrite=true replaced by exactly what `upscale_image`
    makes of its pixels, ICC profile kept."""
    weights = official_weights_dir / EFDN_X4
    lr = np.asarray(Image.open(benchmark_dir / "Set5" / "LR_bicubic" / "X4" / "butterflyx4.png").convert("RGB"))
    photo = save(tmp_path / "photos" / "butterfly.png", lr, icc_profile=SRGB)
    before = photo.read_bytes()
    with pytest.raises(PlanError, match="would overwrite input files"):
        upscale(weights, tmp_path, f"input={photo}", f"output={photo.parent}", "name='{stem}'")
    assert photo.read_bytes() == before
    summary = upscale(weights, tmp_path, f"input={photo}", f"output={photo.parent}", "name='{stem}'", "overwrite=true")
    assert summary["counts"] == {"ok": 1}
    out = Image.open(photo)
    assert out.info.get("icc_profile") == SRGB and out.size == (256, 256)
    assert np.array_equal(np.asarray(out), upscale_image(load_model(weights), lr))
