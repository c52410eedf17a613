"""fetch / safe_extract / locate (jpq/data/download.py) against a local HTTP server with Range support."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from jpq.data import download
from jpq.data.download import ARCHIVES, fetch, locate, safe_extract, verify_file
from jpq.errors import DatasetError


class _Server:
    """A tiny HTTP file server: honours ``Range: bytes=N-`` unless told not to, can cut bodies short."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.honour_range = True
        self.truncate_at: int | None = None  # send only this many body bytes, then drop the connection
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # http.server API name
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                header = self.headers.get("Range")
                server.ranges.append(header)
                start = 0
                if header and server.honour_range:
                    start = int(header.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if server.truncate_at is not None:
                    self.wfile.write(payload[: server.truncate_at])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture()
def server() -> Iterator[_Server]:
    srv = _Server()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


PAYLOAD = bytes(range(256)) * 1000  # 256,000 bytes (several 1 MiB-chunk-free reads)
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def test_fetch_downloads_and_verifies(server: _Server, tmp_path: Path) -> None:
    server.files["/a.bin"] = PAYLOAD
    dest = fetch(server.url("/a.bin"), tmp_path / "a.bin", md5=MD5, sha256=SHA256, size=len(PAYLOAD),
                 progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.part").exists()
    assert server.ranges == [None]
    # an existing verified file is returned without touching the network
    fetch(server.url("/a.bin"), dest, md5=MD5, progress=False)
    assert server.ranges == [None]


def test_fetch_refuses_wrong_checksum_and_deletes_download(server: _Server, tmp_path: Path) -> None:
    server.files["/a.bin"] = PAYLOAD
    with pytest.raises(DatasetError, match="md5"):
        fetch(server.url("/a.bin"), tmp_path / "a.bin", md5="0" * 32, progress=False)
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()
    with pytest.raises(DatasetError, match="sha256"):
        fetch(server.url("/a.bin"), tmp_path / "a.bin", sha256="f" * 64, progress=True)
    with pytest.raises(DatasetError, match="bytes"):
        fetch(server.url("/a.bin"), tmp_path / "a.bin", size=len(PAYLOAD) + 1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_fetch_refuses_existing_wrong_file_without_deleting_it(tmp_path: Path) -> None:
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"not it")
    with pytest.raises(DatasetError, match="md5"):
        fetch("http://127.0.0.1:9/never", dest, md5=MD5, progress=False)
    assert dest.read_bytes() == b"not it"


def test_fetch_resumes_partial_download_with_range(server: _Server, tmp_path: Path) -> None:
    server.files["/a.bin"] = PAYLOAD
    server.truncate_at = 100_000  # the connection drops after 100,000 bytes
    with pytest.raises(DatasetError, match="resumes"):
        fetch(server.url("/a.bin"), tmp_path / "a.bin", md5=MD5, size=len(PAYLOAD), progress=False)
    part = tmp_path / "a.bin.part"
    assert part.stat().st_size == 100_000 and not (tmp_path / "a.bin").exists()
    server.truncate_at = None
    fetch(server.url("/a.bin"), tmp_path / "a.bin", md5=MD5, size=len(PAYLOAD), progress=False)
    assert server.ranges == [None, "bytes=100000-"]
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD and not part.exists()


def test_fetch_restarts_when_server_ignores_range(server: _Server, tmp_path: Path) -> None:
    server.files["/a.bin"] = PAYLOAD
    server.honour_range = False
    (tmp_path / "a.bin.part").write_bytes(b"\xff" * 5000)  # garbage that must not be kept
    fetch(server.url("/a.bin"), tmp_path / "a.bin", md5=MD5, progress=False)
    assert server.ranges == ["bytes=5000-"]
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_fetch_complete_part_gets_416_and_is_verified(server: _Server, tmp_path: Path) -> None:
    server.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD)
    fetch(server.url("/a.bin"), tmp_path / "a.bin", md5=MD5, progress=False)  # size unknown: asks
    assert server.ranges == ["bytes=256000-"]  # 416 "bytes */256000": complete, nothing downloaded again
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    # a part longer than the file gets 416 with another size: restart from zero
    (tmp_path / "b.bin.part").write_bytes(PAYLOAD + b"junk")
    fetch(server.url("/a.bin"), tmp_path / "b.bin", md5=MD5, progress=False)
    assert server.ranges[1:] == ["bytes=256004-", None]
    assert (tmp_path / "b.bin").read_bytes() == PAYLOAD


def test_fetch_http_error_is_dataset_error(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="put it at"):
        fetch(server.url("/missing.bin"), tmp_path / "m.bin", progress=False)


def test_verify_file_accepts_matching_digests(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(PAYLOAD)
    verify_file(tmp_path / "f", md5=MD5.upper(), sha256=SHA256, size=256_000)


# ------------------------------------------------------------------------------------------- extraction


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_safe_extract_tar_ok(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "ok.tar.gz",
                   [_file("./top/a.txt"), _file("top/sub/b.txt"), _link("top/l", "a.txt", tarfile.SYMTYPE)],
                   {"./top/a.txt": b"A", "top/sub/b.txt": b"B"})
    dest = safe_extract(archive, tmp_path / "out")
    assert (dest / "top" / "a.txt").read_bytes() == b"A"
    assert (dest / "top" / "sub" / "b.txt").read_bytes() == b"B"
    assert (dest / "top" / "l").read_bytes() == b"A"


@pytest.mark.parametrize(
    "members",
    [
        [_file("../evil.txt")],
        [_file("/abs/evil.txt")],
        [_file("a/../../evil.txt")],
        [_link("l", "../../outside", tarfile.SYMTYPE)],
        [_link("l", "/etc/passwd", tarfile.SYMTYPE)],
        [_link("h", "../evil.txt", tarfile.LNKTYPE)],
        [_link("dev", "", tarfile.CHRTYPE)],
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink-out", "symlink-abs", "hardlink-out", "device"],
)
def test_safe_extract_tar_refuses_unsafe_members(tmp_path: Path, members: list[tarfile.TarInfo]) -> None:
    good = _file("good.txt")
    data = {m.name: b"x" for m in members if m.type == tarfile.REGTYPE}
    data["good.txt"] = b"g"
    archive = _tar(tmp_path / "bad.tar.gz", [good, *members], data)
    dest = tmp_path / "sandbox" / "out"
    with pytest.raises(DatasetError, match="refusing"):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []  # nothing written, not even the safe member
    assert not (tmp_path / "sandbox" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_safe_extract_zip(tmp_path: Path) -> None:
    ok = tmp_path / "ok.zip"
    with zipfile.ZipFile(ok, "w") as zf:
        zf.writestr("root/a.txt", "A")
    assert (safe_extract(ok, tmp_path / "o") / "root" / "a.txt").read_text() == "A"
    for name in ("../evil.txt", "/abs.txt", "C:/win.txt"):
        bad = tmp_path / "bad.zip"
        with zipfile.ZipFile(bad, "w") as zf:
            zf.writestr(name, "x")
        with pytest.raises(DatasetError, match="refusing"):
            safe_extract(bad, tmp_path / "z")
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("l")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "../../etc/passwd")
    with pytest.raises(DatasetError, match="symlink"):
        safe_extract(link, tmp_path / "z")
    assert not (tmp_path / "evil.txt").exists()


def test_safe_extract_corrupt_archive(tmp_path: Path) -> None:
    bad = tmp_path / "x.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + os.urandom(100))
    with pytest.raises(DatasetError):
        safe_extract(bad, tmp_path / "o")


# ------------------------------------------------------------------------------ loaders and downloads


def test_locate_missing_says_what_to_put_where(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        locate(tmp_path, key="cifar10", folders=("cifar-10-batches-py",), marker="data_batch_1",
               download=False, progress=False, what="CIFAR-10")
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and str(tmp_path) in msg and "download=True" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg


def test_official_archive_table() -> None:
    """docs/benchmarks.md §2.1, §3.1, §4.1: names, sizes, checksums."""
    assert ARCHIVES["cifar10"].size == 170_498_071
    assert ARCHIVES["cifar10"].md5 == "c58f30108f718f92721af3b95e74349a"
    assert ARCHIVES["gsc"].size == 2_428_923_189 and ARCHIVES["gsc"].md5 == "6b74f3901214cb2c2934e98196829835"
    assert ARCHIVES["gsc_test"].size == 112_563_277
    assert ARCHIVES["tiny_imagenet"].filename == "tiny-imagenet-200.zip"
    assert ARCHIVES["tiny_imagenet"].md5 == "90528d7ca1a48142e341f4ef8d21d0de"


def _tiny_cifar_targz(n: int = 4) -> bytes:
    """A minimal cifar-10-python.tar.gz: 5 train batches of ``n`` images and a test batch."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            batch = {
                b"batch_label": name.encode(),
                b"labels": [(i + j) % 10 for j in range(n)],
                b"data": np.full((n, 3072), i * 10, dtype=np.uint8),
                b"filenames": [f"f{j}.png".encode() for j in range(n)],
            }
            raw = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def test_loader_download_true_fetches_official_archive(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jpq.data.cifar10 import load_cifar10

    blob = _tiny_cifar_targz()
    server.files["/cifar-10-python.tar.gz"] = blob
    fake = dataclasses.replace(ARCHIVES["cifar10"], url=server.url("/cifar-10-python.tar.gz"),
                               md5=hashlib.md5(blob).hexdigest(), size=len(blob))
    monkeypatch.setitem(download.ARCHIVES, "cifar10", fake)
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        load_cifar10(tmp_path, download=False, progress=False)
    assert server.ranges == []
    bundle = load_cifar10(tmp_path, download=True, val_size=0.25, progress=False)
    assert (tmp_path / "cifar-10-python.tar.gz").read_bytes() == blob
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (15, 5, 4)

    monkeypatch.setitem(download.ARCHIVES, "cifar10", dataclasses.replace(fake, md5="1" * 32))
    other = tmp_path / "other"
    with pytest.raises(DatasetError, match="md5"):
        load_cifar10(other, download=True, progress=False)
    assert not any(other.iterdir())
