"""Atomic writes and checksums: the one home every writer in rayrag uses.

A reader (a resumed job, a serving replica, a second process racing for the same cache
entry) must never see a half-written file or folder. So everything is written under a
temporary name in the destination's own folder (same filesystem, so the final rename is
atomic) and renamed into place only once complete; on any failure the temporary is
removed and the destination is left as it was.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from .errors import DataError


def _temp_name(dest: Path, suffix: str = "") -> Path:
    # Hidden, unique per writer, and keeps the destination's suffix: some writers (numpy's
    # savez, matplotlib's savefig) choose the format from it or append their own.
    return dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for a writer that wants a file name
    (``pq.write_table(table, tmp)``); once the block succeeds it is fsynced and renamed onto
    ``path``. The temporary never outlives the block."""
    path = Path(path)
    tmp = _temp_name(path, path.suffix)
    # Created here (not by mkstemp) so the file gets the umask's permissions, like open() would.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """``open(path, mode)`` that publishes the file only when the block finishes without error."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole file: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any, sort_keys: bool = True) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


@contextlib.contextmanager
def atomic_dir(dest: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``dest``; fill it, and it becomes ``dest``.

    ``replace=False``: if ``dest`` appears meanwhile (another process raced us to the same
    cache entry), theirs is complete too, so ours is discarded. ``replace=True``: an existing
    ``dest`` is replaced (a re-exported model). On failure the temporary folder is removed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(dest)
    tmp.mkdir()  # mode 0o777 minus the umask, unlike mkdtemp's 0o700
    try:
        yield tmp
        old = None
        if replace and dest.exists():
            old = _temp_name(dest, ".old")
            dest.rename(old)
        try:
            tmp.rename(dest)
        except OSError:
            if old is not None:
                old.rename(dest)  # put the old one back: never leave no folder at all
            if replace or not dest.exists():
                raise
        if old is not None:  # only once the new folder is in place
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def sha256_folder(folder: str | Path, include: Callable[[Path], bool] = lambda p: True) -> str:
    """sha256 over the names and checksums of the folder's files (top level, sorted by name)
    that ``include`` accepts: changes whenever one of those files is renamed or changes."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).iterdir()):
        if f.is_file() and include(f):
            h.update(f.name.encode())
            h.update(sha256_file(f).encode())
    return h.hexdigest()


def read_manifest(folder: str | Path, what: str) -> dict:
    """``folder/manifest.json``, the file a job writes last (so its presence marks a finished
    output), or a DataError naming ``what`` the folder should have been."""
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise DataError(f"{folder} is not a finished {what} (no manifest.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON ({e.msg})") from None
