"""download/extract against a local HTTP server on 127.0.0.1 (Range support, dropped connections)."""

from __future__ import annotations

import hashlib
import io
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
