"""Fetching the official dataset archives: checksums, resumable downloads, safe extraction.

docs/benchmarks.md §2.1/§3.1/§4.1 name the official archives with their sizes and checksums; every loader
that is given ``download=True`` fetches its archive through :func:`fetch`, which

* downloads into ``<dest>.part`` and resumes an interrupted download with an HTTP ``Range`` request
  (restarting from zero when the server ignores ``Range``),
* verifies size, md5 and sha256 before the file gets its final name, so a half or corrupt download is
  never mistaken for the real archive, and refuses a wrong file with one clear :class:`DatasetError`.

:func:`safe_extract` unpacks a tar(.gz) or zip archive after checking *each* member (docs/architecture.md §5,
Conventions: "archives extract with path-traversal checks"): absolute names, ``..`` escapes, links that
point outside the destination and device files are refused before anything is written. The loaders
themselves read the archives in place and do not need to extract them.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import stat
import tarfile
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from jpq.errors import DatasetError
from jpq.io import atomic_torch_save

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
CACHE_DIRNAME = "jpq_cache"  # decoded/featurised datasets live in <data_dir>/jpq_cache/


@dataclass(frozen=True)
class Archive:
    """One official dataset archive (docs/benchmarks.md §2.1, §3.1, §4.1)."""

    filename: str
    url: str
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None


#: The official archives. Tests may swap a URL/checksum for a local server's.
ARCHIVES: dict[str, Archive] = {
    "cifar10": Archive(
        filename="cifar-10-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        size=170_498_071,
        md5="c58f30108f718f92721af3b95e74349a",
    ),
    "gsc": Archive(
        filename="speech_commands_v0.02.tar.gz",
        url="http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
        size=2_428_923_189,
        md5="6b74f3901214cb2c2934e98196829835",
        sha256="af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
    ),
    "gsc_test": Archive(
        filename="speech_commands_test_set_v0.02.tar.gz",
        url="http://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz",
        size=112_563_277,
        sha256="cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df",
    ),
    "tiny_imagenet": Archive(
        filename="tiny-imagenet-200.zip",
        url="http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        size=248_100_043,
        md5="90528d7ca1a48142e341f4ef8d21d0de",
    ),
}


def file_digests(path: str | Path) -> tuple[str, str]:
    """``(md5, sha256)`` hex digests of a file, read once in 1 MiB chunks."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def verify_file(
    path: str | Path, *, md5: str | None = None, sha256: str | None = None, size: int | None = None
) -> None:
    """Raise :class:`DatasetError` unless ``path`` has the expected size and checksums."""
    path = Path(path)
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise DatasetError(f"{path} has {actual_size:,} bytes, expected {size:,} (truncated or wrong file)")
    if md5 is None and sha256 is None:
        return
    actual_md5, actual_sha = file_digests(path)
    if md5 is not None and actual_md5 != md5.lower():
        raise DatasetError(f"{path} has md5 {actual_md5}, expected {md5} (corrupt or wrong file)")
    if sha256 is not None and actual_sha != sha256.lower():
        raise DatasetError(f"{path} has sha256 {actual_sha}, expected {sha256} (corrupt or wrong file)")


@contextmanager
def _progress_bar(enabled: bool, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich download bar (bytes, speed, ETA); ``advance(n)`` is a no-op when disabled."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.update(task, advance=n)


def _open(url: str, start: int) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": "jpq"})
    if start > 0:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # the official dataset URLs (http/https)


def fetch(
    url: str,
    dest: str | Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``<dest>.part``) and verify it; return ``dest``.

    An existing ``dest`` is verified and returned without network access; a wrong one is refused (the
    user must delete it: it may be their own file). A finished download that fails the checks is
    deleted, so the next call starts afresh instead of resuming garbage.
    """
    dest = Path(dest)
    if dest.exists():
        verify_file(dest, md5=md5, sha256=sha256, size=size)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    if size is not None and start > size:
        part.unlink()
        start = 0
    if size is None or start < size:
        try:
            start = _download(url, part, start, size, progress, dest.name)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            raise DatasetError(
                f"downloading {url} failed ({e}); the partial file {part} is kept and the next run resumes "
                f"it, or download the file yourself and put it at {dest}"
            ) from e
    try:
        verify_file(part, md5=md5, sha256=sha256, size=size)
    except DatasetError as e:
        part.unlink(missing_ok=True)
        raise DatasetError(f"download of {url} refused: {e}; the file was deleted, run again to retry") from e
    os.replace(part, dest)
    return dest


def _download(url: str, part: Path, start: int, size: int | None, progress: bool, name: str) -> int:
    """Stream ``url`` into ``part`` from byte ``start``; return the final size of ``part``."""
    try:
        response = _open(url, start)
    except urllib.error.HTTPError as e:
        if e.code != 416 or start == 0:
            raise
        # Range not satisfiable: "Content-Range: bytes */N" tells the full size; if the part already
        # has N bytes it is complete (the checksums decide), otherwise start over.
        if e.headers.get("Content-Range", "").strip() == f"bytes */{start}":
            return start
        part.unlink(missing_ok=True)
        start = 0
        response = _open(url, 0)
    with response:
        content_range = response.headers.get("Content-Range", "")
        if start > 0 and not (response.status == 206 and content_range.startswith(f"bytes {start}-")):
            start = 0  # the server ignored Range: restart from the beginning
        length = response.headers.get("Content-Length")
        promised = start + int(length) if length else None  # what this response says it will deliver
        total = size if size is not None else promised
        bar = _progress_bar(progress, f"download {name}", total)
        with open(part, "ab" if start > 0 else "wb") as f, bar as advance:
            advance(start)
            while chunk := response.read(CHUNK_BYTES):
                f.write(chunk)
                advance(len(chunk))
    received = part.stat().st_size
    if promised is not None and received < promised:  # connection dropped: http.client returns b"" early
        raise http.client.IncompleteRead(b"", promised - received)
    return received


def fetch_archive(key: str, data_dir: str | Path, *, progress: bool = True) -> Path:
    """Fetch the official archive ``ARCHIVES[key]`` into ``data_dir`` (docs/benchmarks.md URLs/checksums)."""
    archive = ARCHIVES[key]
    return fetch(
        archive.url, Path(data_dir) / archive.filename,
        md5=archive.md5, sha256=archive.sha256, size=archive.size, progress=progress,
    )


# --------------------------------------------------------------------------------------------- extraction


def _member_target(dest: Path, name: str, archive: Path) -> Path:
    """The resolved path a member would be written to; refuses absolute names and ``..`` escapes."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or (posix.parts and posix.parts[0].endswith(":")):
        raise DatasetError(f"{archive}: refusing absolute member path {name!r}")
    target = (dest / Path(*posix.parts)).resolve() if posix.parts else dest
    if target != dest and dest not in target.parents:
        raise DatasetError(f"{archive}: refusing member {name!r} that escapes the destination folder")
    return target


def _check_tar_member(dest: Path, member: tarfile.TarInfo, archive: Path) -> None:
    target = _member_target(dest, member.name, archive)
    if member.issym():
        if PurePosixPath(member.linkname).is_absolute():
            raise DatasetError(f"{archive}: refusing symlink {member.name!r} -> absolute {member.linkname!r}")
        _member_target(dest, str(PurePosixPath(member.name).parent / member.linkname), archive)
        resolved = (target.parent / member.linkname).resolve()
        if resolved != dest and dest not in resolved.parents:
            raise DatasetError(f"{archive}: refusing symlink {member.name!r} that points outside the folder")
    elif member.islnk():
        _member_target(dest, member.linkname, archive)
    elif not (member.isfile() or member.isdir()):
        raise DatasetError(f"{archive}: refusing special member {member.name!r} (device, fifo, ...)")


def safe_extract(archive: str | Path, dest: str | Path) -> Path:
    """Extract a ``.tar``/``.tar.gz``/``.tgz`` or ``.zip`` into ``dest`` after checking every member.

    Nothing is written when any member is unsafe: absolute paths, ``..`` traversal, symlinks or hard
    links that point outside ``dest``, device/fifo members, zip entries flagged as symlinks.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _member_target(dest, info.filename, archive)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise DatasetError(f"{archive}: refusing symlink entry {info.filename!r}")
            zf.extractall(dest)
        return dest
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DatasetError(f"{archive} is not a readable tar or zip archive ({e})") from e
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DatasetError(f"{archive} is truncated or corrupt ({e}); delete it, fetch it again") from e
        for member in members:
            _check_tar_member(dest, member, archive)
        if hasattr(tarfile, "data_filter"):  # second line of defence where Python has it
            tf.extractall(dest, members=members, filter="data")
        else:  # pragma: no cover - Python without PEP 706 filters
            tf.extractall(dest, members=members)
    return dest


# ---------------------------------------------------------------------------------- locating local data


def locate(
    data_dir: str | Path,
    *,
    key: str,
    folders: Sequence[str],
    marker: str,
    download: bool,
    progress: bool,
    what: str,
) -> Path:
    """Find a dataset under ``data_dir``: an extracted folder (first of ``folders`` that holds ``marker``),
    else the official archive ``ARCHIVES[key].filename``, else fetch it (``download=True``), else fail
    at once with a message that says which file to put where (docs/architecture.md §5: clear, early errors).
    """
    data_dir = Path(data_dir)
    for folder in folders:
        if (data_dir / folder / marker).exists():
            return data_dir / folder
    archive = ARCHIVES[key]
    path = data_dir / archive.filename
    if path.is_file():
        return path
    if download:
        return fetch_archive(key, data_dir, progress=progress)
    raise DatasetError(
        f"{what} not found: put the official archive {archive.filename} ({archive.url}) into {data_dir}/ "
        f"or extract it to {data_dir / folders[0]}/ (expected {marker} there), or let jpq fetch it "
        "(dataset.download=true on the command line, download=True from Python)"
    )


def size_hint(path: Path, key: str) -> str:
    """A short remark for format errors: does the archive even have the official size?"""
    expected = ARCHIVES[key].size
    if path.is_file() and expected is not None and path.stat().st_size != expected:
        return f" ({path.name} has {path.stat().st_size:,} bytes; the official archive has {expected:,})"
    return ""


# ------------------------------------------------------------------------------------------------ caches


def source_fingerprint(path: str | Path) -> list[Any]:
    """What a cache depends on: a file's (name, size, mtime) or a folder's sorted (relative path, size)s.

    Folders are fingerprinted by content listing rather than mtimes, so a copied folder keeps its cache.
    """
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return [path.name, st.st_size, st.st_mtime_ns]
    entries: list[Any] = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = Path(root) / name
            entries.append([full.relative_to(path).as_posix(), full.stat().st_size])
    return entries


def cache_path(data_dir: str | Path, name: str, key: Any) -> Path:
    """``<data_dir>/jpq_cache/<name>-<16 hex of sha256(key)>.pt``; ``key`` is any JSON-able value."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return Path(data_dir) / CACHE_DIRNAME / f"{name}-{digest}.pt"


def load_cache(path: Path) -> dict[str, Any] | None:
    """The cached dict, or None when absent or unreadable (then it is rebuilt and overwritten)."""
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable cache is simply rebuilt
        warnings.warn(f"ignoring unreadable dataset cache {path}: {e}", stacklevel=2)
        return None
    return obj if isinstance(obj, dict) else None


def save_cache(path: Path, obj: dict[str, Any]) -> None:
    """Write the cache atomically (parallel sweep jobs may race); a read-only data_dir only warns."""
    try:
        atomic_torch_save(path, obj)
    except OSError as e:
        warnings.warn(f"could not write dataset cache {path}: {e}; the data will be decoded again next time",
                      stacklevel=2)
