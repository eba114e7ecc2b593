"""download/extract against a local HTTP server on 127.0.0.1 (Range support, dropped connections)."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import shutil
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from _data_helpers import real_crops

from sr_lightning.data import download as dl
from sr_lightning.data.io import load_image, save_image


class _Server:
    """Serves ``files`` (name -> bytes); honours ``Range: bytes=N-``; can cut the first transfers short."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_first = 0  # this many full-body responses send only half the bytes, then close
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if server.drop_first > 0:
                    server.drop_first -= 1
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _zip_bytes(tmp_path: Path) -> bytes:
    """A zip laid out like DIV2K_valid_HR.zip, holding two real (PNG) photo crops."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, img in enumerate(real_crops(2), start=801):
            save_image(tmp_path / f"{k:04d}.png", img)
            zf.write(tmp_path / f"{k:04d}.png", f"DIV2K_valid_HR/{k:04d}.png")
    return buf.getvalue()


def _tar_bytes(tmp_path: Path) -> bytes:
    buf = io.BytesIO()
    save_image(tmp_path / "baby.png", real_crops(1)[0])
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(tmp_path / "baby.png", "benchmark/Set5/HR/baby.png")
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download_verify_and_extract_zip(server, tmp_path):
    data = _zip_bytes(tmp_path)
    server.files["DIV2K_valid_HR.zip"] = data
    dest = tmp_path / "dl" / "DIV2K_valid_HR.zip"
    out = dl.download(server.base + "DIV2K_valid_HR.zip", dest, len(data), _sha(data), progress=False)
    assert out == dest and dest.read_bytes() == data and not dest.with_name(dest.name + ".part").exists()
    target = dl.extract(dest, tmp_path / "DIV2K")
    np_img = load_image(target / "DIV2K_valid_HR" / "0802.png")
    assert np_img.shape == (122, 98, 3) and (np_img == real_crops(2)[1]).all()
    # a verified file is not fetched again
    n = len(server.requests)
    dl.download(server.base + "DIV2K_valid_HR.zip", dest, len(data), _sha(data), progress=False)
    assert len(server.requests) == n


def test_resume_after_dropped_connection(server, tmp_path):
    data = _tar_bytes(tmp_path)
    server.files["benchmark.tar"] = data
    server.drop_first = 1
    dest = tmp_path / "benchmark.tar"
    dl.download(server.base + "benchmark.tar", dest, sha256=_sha(data), progress=False, retry_wait=0)
    assert dest.read_bytes() == data
    assert server.requests[0][1] is None and server.requests[1][1] == f"bytes={len(data) // 2}-"
    dl.extract(dest, tmp_path / "out")
    assert (tmp_path / "out" / "benchmark" / "Set5" / "HR" / "baby.png").is_file()


def test_resume_of_existing_partial_file_and_no_retry(server, tmp_path):
    data = _zip_bytes(tmp_path)
    server.files["a.zip"] = data
    dest = tmp_path / "a.zip"
    server.drop_first = 1
    with pytest.raises(dl.DownloadError, match="partial file kept"):
        dl.download(server.base + "a.zip", dest, len(data), _sha(data), progress=False, retries=0)
    part = dest.with_name("a.zip.part")
    assert part.stat().st_size == len(data) // 2 and not dest.exists()
    dl.download(server.base + "a.zip", dest, len(data), _sha(data), progress=False, retries=0)
    assert dest.read_bytes() == data and server.requests[-1][1] == f"bytes={len(data) // 2}-"
    # a server that ignores Range gets the whole file again, written from the start
    server.ignore_range = True
    part.write_bytes(b"garbage")
    dest.unlink()
    dl.download(server.base + "a.zip", dest, len(data), _sha(data), progress=False)
    assert dest.read_bytes() == data


def test_checksum_mismatch_keeps_bad_file_aside(server, tmp_path):
    data = _tar_bytes(tmp_path)
    server.files["x.tar"] = data
    dest = tmp_path / "x.tar"
    with pytest.raises(dl.ChecksumError, match=r"sha256 .*expected 0{64}.*kept aside"):
        dl.download(server.base + "x.tar", dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and (tmp_path / "x.tar.bad").read_bytes() == data
    with pytest.raises(dl.ChecksumError, match=f"size {len(data)} bytes, expected {len(data) + 1}"):
        dl.download(server.base + "x.tar", dest, size=len(data) + 1, progress=False)
    assert (tmp_path / "x.tar.bad1").exists()
    # an existing corrupt dest is moved aside and downloaded again, never reused
    dest.write_bytes(b"corrupt")
    dl.download(server.base + "x.tar", dest, sha256=_sha(data), progress=False)
    assert dest.read_bytes() == data and (tmp_path / "x.tar.bad2").read_bytes() == b"corrupt"
    with pytest.raises(dl.DownloadError, match="404"):
        dl.download(server.base + "missing.tar", tmp_path / "m.tar", progress=False)


def test_extract_refuses_path_traversal(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(dl.DownloadError, match="outside"):
        dl.extract(evil, tmp_path / "dest")
    assert not (tmp_path / "outside.txt").exists()
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(ValueError, match="neither a zip nor a tar"):
        dl.extract(tmp_path / "plain.txt", tmp_path / "dest")


def test_cli_fetches_known_archive(server, tmp_path, monkeypatch, capsys):
    data = _zip_bytes(tmp_path)
    server.files["DIV2K_valid_HR.zip"] = data
    fake = dl.Archive(server.base + "DIV2K_valid_HR.zip", "DIV2K", len(data), _sha(data))
    monkeypatch.setitem(dl.ARCHIVES, "div2k-valid-hr", fake)
    root = tmp_path / "root"
    assert dl.main(["div2k-valid-hr", "--root", str(root), "--quiet"]) == 0
    assert (root / "DIV2K" / "DIV2K_valid_HR" / "0801.png").is_file()
    assert (root / "downloads" / "DIV2K_valid_HR.zip").read_bytes() == data
    n = len(server.requests)
    assert dl.main(["div2k-valid-hr", "--root", str(root), "--quiet"]) == 0  # already extracted
    assert len(server.requests) == n
    assert dl.main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert "div2k-train-lr-x4" in listing and "benchmark.tar" in listing and "div2k-x4" in listing
    with pytest.raises(SystemExit):
        dl.main(["nonsense", "--root", str(root)])


def test_known_archive_table_is_complete():
    for s in (2, 3, 4):
        for split in ("train", "valid"):
            a = dl.ARCHIVES[f"div2k-{split}-lr-x{s}"]
            assert a.filename == f"DIV2K_{split}_LR_bicubic_X{s}.zip" and len(a.sha256) == 64 and a.size > 0
    assert dl.ARCHIVES["flickr2k"].filename == "Flickr2K.tar" and len(dl.ARCHIVES["flickr2k"].md5) == 32
    assert set(dl.GROUPS["div2k-x4"]) <= set(dl.ARCHIVES)


# -- all-or-nothing extraction -------------------------------------------------------------------------------------
def _tar_of(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    """A tar built at test time: (name, bytes) for files, or ready TarInfo headers (links, devices)."""
    with tarfile.open(path, "w") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    return path


def _link(name: str, target: str, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under `root`: file contents, link targets, folders as ''."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = "-> " + os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else ""
    return out


def _user_dest(tmp_path: Path) -> Path:
    """A destination that already holds the user's files, one of them named like an archive member."""
    dest = tmp_path / "dest"
    (dest / "set").mkdir(parents=True)
    (dest / "set" / "a.txt").write_bytes(b"user's a")
    (dest / "mine.txt").write_bytes(b"mine")
    return dest


def test_failed_tar_extraction_leaves_the_destination_as_it_was(tmp_path):
    dest = _user_dest(tmp_path)
    before = _tree(dest)
    archive = _tar_of(tmp_path / "t.tar", [("set/a.txt", b"A" * 3000), ("set/new/b.txt", b"B" * 3000)])
    data = archive.read_bytes()
    archive.write_bytes(data[: 512 + 3072 + 512 + 1000])  # cut inside the second member's data
    with pytest.raises(tarfile.ReadError):
        dl.extract(archive, dest)
    assert _tree(dest) == before  # nothing of the archive, no staging folder, the user's a.txt untouched
    fresh = tmp_path / "fresh" / "dest"
    with pytest.raises(tarfile.ReadError):
        dl.extract(archive, fresh)
    assert not (tmp_path / "fresh").exists()  # folders it made are removed too
    # the complete archive replaces set/a.txt and keeps the rest
    archive.write_bytes(data)
    dl.extract(archive, dest)
    assert _tree(dest) == {**before, "set/a.txt": b"A" * 3000, "set/new": "", "set/new/b.txt": b"B" * 3000}


def test_failed_zip_extraction_and_full_disk_leave_nothing(tmp_path, monkeypatch):
    dest = _user_dest(tmp_path)
    before = _tree(dest)
    archive = tmp_path / "z.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("set/a.txt", b"A" * 100)
        zf.writestr("set/b.txt", b"B" * 100)
    good = archive.read_bytes()
    archive.write_bytes(good.replace(b"B" * 100, b"C" * 100))  # the second member fails its CRC
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        dl.extract(archive, dest)
    assert _tree(dest) == before
    archive.write_bytes(good)
    real = shutil.copyfileobj
    calls = []

    def disk_fills_up(*args, **kwargs):  # the second member's write finds the disk full
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(shutil, "copyfileobj", disk_fills_up)
    with pytest.raises(OSError, match=rf"^\[Errno 28\] disk full .* while writing {dest}; nothing of z.zip was left"):
        dl.extract(archive, dest)
    assert _tree(dest) == before


def test_failed_move_puts_back_the_files_it_replaced(tmp_path, monkeypatch):
    dest = _user_dest(tmp_path)
    before = _tree(dest)
    archive = _tar_of(tmp_path / "t.tar", [("set/a.txt", b"new a"), ("set/z.txt", b"z"), ("top.txt", b"t")])
    real = dl.move_into_place
    calls = []

    def fails_late(src, target, **kw):
        calls.append(target)
        if len(calls) == 4:  # set/a.txt set aside, set/a.txt and set/z.txt moved: top.txt fails
            raise OSError(errno.EIO, "Input/output error")
        return real(src, target, **kw)

    monkeypatch.setattr(dl, "move_into_place", fails_late)
    with pytest.raises(OSError, match="Input/output"):
        dl.extract(archive, dest)
    assert _tree(dest) == before


def test_file_against_folder_is_refused_before_anything_moves(tmp_path):
    dest = _user_dest(tmp_path)
    before = _tree(dest)
    archive = _tar_of(tmp_path / "t.tar", [("b.txt", b"b"), ("mine.txt/x", b"x")])  # mine.txt is a user's file
    with pytest.raises(dl.DownloadError, match=r"mine.txt: it is a file where the archive has a folder"):
        dl.extract(archive, dest)
    assert _tree(dest) == before


@pytest.mark.parametrize(
    "member",
    [
        _link("set/evil", "../../outside"),  # relative link out
        _link("evil", "/etc/passwd"),  # absolute link
        _link("evil", "../x", hard=True),  # hard link out (names are archive-root relative)
        _link("set", ".."),  # a link to the parent, members written through it next
    ],
    ids=["symlink-up", "symlink-absolute", "hardlink-up", "symlink-parent"],
)
def test_links_pointing_outside_refuse_the_whole_archive(tmp_path, member):
    dest = _user_dest(tmp_path)
    before = _tree(dest)
    archive = _tar_of(tmp_path / "t.tar", [("ok.txt", b"ok"), member, ("set/after.txt", b"x")])
    with pytest.raises(dl.DownloadError, match=rf"{re.escape(str(archive))}: .*link .* outside {dest}; nothing"):
        dl.extract(archive, dest)
    assert _tree(dest) == before and not (tmp_path / "outside").exists()


def test_devices_are_refused_and_links_inside_are_kept(tmp_path):
    dev = tarfile.TarInfo("null")
    dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
    with pytest.raises(dl.DownloadError, match="'null' is a device or fifo"):
        dl.extract(_tar_of(tmp_path / "d.tar", [dev]), tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    archive = _tar_of(
        tmp_path / "l.tar", [("set/a.txt", b"a"), _link("set/b.txt", "a.txt"), _link("set/c.txt", "set/a.txt", True)]
    )
    dest = dl.extract(archive, tmp_path / "ok")
    assert _tree(dest) == {"set": "", "set/a.txt": b"a", "set/b.txt": "-> a.txt", "set/c.txt": b"a"}
    assert (dest / "set" / "c.txt").stat().st_ino == (dest / "set" / "a.txt").stat().st_ino
    # extracting again replaces the files and the link with the archive's (a re-run after a lost marker)
    dest2 = dl.extract(archive, dest)
    assert _tree(dest2) == _tree(dest) and not [p for p in dest.iterdir() if p.name.startswith(".")]


def test_full_disk_stops_the_download_at_once_and_keeps_the_bytes(server, tmp_path, monkeypatch):
    data = _zip_bytes(tmp_path)
    server.files["a.zip"] = data
    dest = tmp_path / "a.zip"
    part = dest.with_name("a.zip.part")

    class FillsUp(io.FileIO):  # room for half of the archive
        def write(self, b):
            if self.tell() + len(b) > len(data) // 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(b)

    monkeypatch.setattr(dl, "open", lambda path, mode: FillsUp(path, mode.replace("b", "")), raising=False)
    with pytest.raises(OSError, match=rf"^\[Errno 28\] disk full .* while writing {part}; the bytes so far are kept"):
        dl.download(server.base + "a.zip", dest, len(data), _sha(data), progress=False, chunk_size=1024)
    assert len(server.requests) == 1  # not retried: waiting frees no space
    kept = part.stat().st_size
    assert 0 < kept <= len(data) // 2 and not dest.exists()
    monkeypatch.undo()
    dl.download(server.base + "a.zip", dest, len(data), _sha(data), progress=False)
    assert dest.read_bytes() == data and server.requests[-1][1] == f"bytes={kept}-"
