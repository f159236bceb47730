"""Opt-in download of official dataset archives, verified by checksum before use."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from prunescope.errors import DataError


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_archive(url: str, dest: Path, md5: str) -> Path:
    """Fetch ``url`` to ``dest`` (a partial file first), check its md5, return the path."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and file_digest(dest, "md5") == md5:
        return dest
    partial = dest.with_name(dest.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DataError(f"could not download {url}: {exc}") from None
    got = file_digest(partial, "md5")
    if got != md5:
        partial.unlink(missing_ok=True)
        raise DataError(f"download of {url} is corrupt: md5 {got}, expected {md5}")
    partial.replace(dest)
    return dest


def extract_archive(archive: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    elif archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                target = (into / member).resolve()
                if not target.is_relative_to(into.resolve()):
                    raise DataError(f"{archive} holds a path outside its folder: {member}")
            z.extractall(into)
    else:  # pragma: no cover - only our own URLs reach here
        raise DataError(f"unknown archive type: {archive}")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
