"""Outputs a reader may trust, written atomically, and the checks of an output path before any work.

Every such file is written to a temporary file in its own folder, flushed to disk (``fsync``) and renamed over its
final name (``os.replace``): a reader sees the old file or the new one, never a part. A kill mid-write leaves only
the temporary file, named ``.<final name>.<pid>-<random>.bilp-tmp``; the next write of the same name removes those
of processes that no longer run. Files get the mode a plain ``open`` gives (``0666`` less the umask).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from bilp_plugin.errors import BiLPError

TMP_SUFFIX = ".bilp-tmp"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def remove_leftovers(path: Path) -> None:
    """Remove the temporary files of writes of ``path`` by processes that were killed (and the ``.lock`` files
    git leaves beside a temporary index)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*{TMP_SUFFIX}*"):
        pid = tmp.name[len(path.name) + 2:].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _temporary(path: Path) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}{TMP_SUFFIX}"


@contextlib.contextmanager
def scratch(path: str | Path) -> Iterator[Path]:
    """A fresh path (not created) for a scratch file beside ``path``, named like the temporary files above so
    that a killed run's is removed by the next; whatever is there at the end of the block is removed."""
    path = Path(path)
    remove_leftovers(path)
    tmp = _temporary(path)
    try:
        yield tmp
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".lock")):
            leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``path`` when the block ends without an exception (nothing changes otherwise);
    creates the missing folders above ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    tmp = _temporary(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes) -> None:
    with replacing(path) as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, payload: Any, **dumps: Any) -> None:
    """``json.dumps(payload, indent=1, **dumps)`` written atomically."""
    write_text(path, json.dumps(payload, **{"indent": 1, **dumps}))


def save_npy(path: str | Path, array: Any) -> None:
    with replacing(path) as f:
        np.save(f, np.asarray(array), allow_pickle=False)


def save_npz(path: str | Path, **arrays: Any) -> None:
    with replacing(path) as f:
        np.savez(f, **arrays)


# ------------------------------------------------------------------------------------------ checks before work
def _blocking_file(path: Path) -> Path | None:
    """The first existing non-folder among the folders above ``path``, if any."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _check_writable(path: Path, flag: str) -> None:
    """``path``'s nearest existing folder must accept new files."""
    folder = next((p for p in path.parents if p.exists()), Path("."))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BiLPError(f"{flag} {path}: cannot write into {folder} (permission denied): choose another {flag}")


def check_new_file(path: str | Path, flag: str, force: bool = False) -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder by that name, a file where a
    folder above it should be, a folder without write permission, or a file that exists (without ``force``)."""
    path = Path(path)
    blocking = _blocking_file(path)
    if blocking is not None:
        raise BiLPError(f"{flag} {path}: {blocking} is a file, not a folder: choose another {flag}")
    if path.is_dir():
        raise BiLPError(f"{flag} {path} is a folder: name a file")
    if path.exists() and not force:
        raise BiLPError(f"{flag} {path} exists: pass --force to overwrite it")
    _check_writable(path, flag)
    return path


def check_folder(path: str | Path, flag: str) -> Path:
    """Refuse, before any work, an output folder that cannot be made or written: a file by that name or above
    it, or no write permission."""
    path = Path(path)
    blocking = path if path.exists() and not path.is_dir() else _blocking_file(path)
    if blocking is not None:
        raise BiLPError(f"{flag} {path}: {blocking} is a file, not a folder: choose another {flag}")
    _check_writable(path / "x", flag)
    return path
