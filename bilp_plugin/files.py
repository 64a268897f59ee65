"""Outputs a reader may trust, written atomically; folders held by one process at a time; the checks of an output
path before any work; OS errors as one line.

Every such file is written to a temporary file in its own folder, flushed to disk (``fsync``) and renamed over its
final name (``os.replace``): a reader sees the old file or the new one, never a part. A kill mid-write leaves only
the temporary file, named ``.<final name>.<pid>-<random>.bilp-tmp``; the next write of the same name removes those
of processes that no longer run. Files get the mode a plain ``open`` gives (``0666`` less the umask). A folder made
whole elsewhere (a report) is built in a temporary folder named the same way and swapped into place
(:func:`swap_in`).

A command folder (a run record, a sweep, a report) is held by one process at a time (:func:`hold`): an exclusive
``flock`` on the folder itself, which the kernel drops when the process ends however it ends, so ``kill -9`` never
leaves a folder locked; the holder's pid is in the folder's ``.bilp-pid`` while it holds it, for the refusal of a
second process to name it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import glob
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from bilp_plugin.errors import BiLPError

TMP_SUFFIX = ".bilp-tmp"
PID_FILE = ".bilp-pid"
"""The pid of the process holding the folder (:func:`hold`), in the folder."""


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
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
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
def os_error(err: OSError) -> str:
    """One line for an OS error met on a path the user gave: the path, what went wrong, the way out."""
    where = f"{err.filename}: " if err.filename else ""
    fix = {errno.ENOSPC: "free some space, or choose another folder",
           errno.EDQUOT: "free some space, or choose another folder",
           errno.EACCES: "choose a folder you may write, or fix its permissions",
           errno.EPERM: "choose a folder you may write, or fix its permissions",
           errno.EROFS: "choose a folder on a writable file system",
           errno.ENAMETOOLONG: "choose a shorter name",
           errno.ELOOP: "a link points to itself: remove it, or choose another path"}.get(
        err.errno or 0, "check the path, or choose another")
    return f"{where}{err.strerror or err}: {fix}"


@contextlib.contextmanager
def as_input_error() -> Iterator[None]:
    """An :class:`OSError` in the block becomes a :class:`BiLPError` (one line, exit status 2)."""
    try:
        yield
    except OSError as err:
        raise BiLPError(os_error(err)) from None


def check_links(path: Path, flag: str) -> None:
    """Refuse a ``path`` that is, or lies below, a link to nothing or a link looping onto itself."""
    for part in (path, *path.parents):
        if not os.path.islink(part):
            continue
        try:
            os.stat(part)
        except FileNotFoundError:
            raise BiLPError(f"{flag} {path}: {part} is a dangling link (to {os.readlink(part)}): remove it, or "
                            f"choose another {flag}") from None
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise
            raise BiLPError(f"{flag} {path}: {part} is a looping link (it leads back to itself): remove it, or "
                            f"choose another {flag}") from None


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
        why = "a read-only file system" if os.statvfs(folder).f_flag & os.ST_RDONLY else "permission denied"
        raise BiLPError(f"{flag} {path}: cannot write into {folder} ({why}): choose another {flag}")


def check_new_file(path: str | Path, flag: str, force: bool = False) -> Path:
    """Refuse, before any work, an output file that cannot be written: a link to nothing or to itself, a folder
    by that name, a file where a folder above it should be, a name too long, a folder without write permission,
    or a file that exists (without ``force``)."""
    path = Path(path)
    check_links(path, flag)
    with as_input_error():
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
    """Refuse, before any work, an output folder that cannot be made or written: a link to nothing or to itself,
    a file by that name or above it, a name too long, or no write permission."""
    path = Path(path)
    check_links(path, flag)
    with as_input_error():
        blocking = path if path.exists() and not path.is_dir() else _blocking_file(path)
        if blocking is not None:
            raise BiLPError(f"{flag} {path}: {blocking} is a file, not a folder: choose another {flag}")
        _check_writable(path / "x", flag)
    return path


def visible_entries(folder: Path) -> list[str]:
    """The names in ``folder`` other than this module's own (the pid file, temporary files of killed writes)."""
    if not folder.is_dir():
        return []
    return sorted(name for name in os.listdir(folder) if name != PID_FILE and not name.endswith(TMP_SUFFIX))


def check_owned(folder: Path, flag: str, marker: str, what: str) -> None:
    """Refuse a non-empty ``folder`` that does not hold ``marker``, the file of the command's own kind of output
    (``what``: e.g. "a sweep folder")."""
    if visible_entries(folder) and not (folder / marker).is_file():
        raise BiLPError(f"{flag} {folder} is not {what} (no {marker}) and holds other files: choose a new or "
                        f"empty folder, or {what}")


# ------------------------------------------------------------------------------------------- exclusive folders
def _pid_in(folder: Path) -> int | None:
    try:
        text = (folder / PID_FILE).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _try_lock(folder: Path) -> int | None:
    """An fd holding ``folder``'s exclusive lock, or ``None`` when another holds it."""
    for _ in range(20):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        mine, there = os.fstat(fd), os.stat(folder)
        if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
            return fd
        os.close(fd)  # the folder was replaced (a report swapped in) since it was opened: lock the new one
    raise BiLPError(f"{folder} keeps being replaced by another process: wait for it to finish")


def _in_use(folder: Path, flag: str) -> BiLPError:
    pid = None
    for _ in range(40):  # the holder writes its pid right after it locks
        pid = _pid_in(folder)
        if pid is not None and process_alive(pid):
            break
        time.sleep(0.05)
    who = f"process {pid}" if pid is not None else "another process"
    return BiLPError(f"{flag} {folder} is in use by {who} (another bilp run): wait for it to finish, or choose "
                     f"another {flag}")


def holder(folder: Path) -> int | None:
    """The pid of the live process holding ``folder`` (-1 when it cannot be told), or ``None``."""
    if not folder.is_dir():
        return None
    fd = _try_lock(folder)
    if fd is not None:
        os.close(fd)
        return None
    pid = _pid_in(folder)
    return pid if pid is not None else -1


class Hold:
    """``folder`` held by this process (see :func:`hold`); the folders it created for that (absolute: the process
    may change its working folder meanwhile)."""

    def __init__(self, folder: Path, fd: int, created: list[Path]) -> None:
        self.folder, self.fd = folder, fd
        self.path = Path(os.path.abspath(folder))
        self.created = [Path(os.path.abspath(p)) for p in created]

    def release(self) -> None:
        """Let another process have the folder (the pid file goes)."""
        if self.fd < 0:
            return
        if _pid_in(self.path) == os.getpid():
            (self.path / PID_FILE).unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = -1

    def discard(self) -> None:
        """Release, and remove the folders made for the hold while they hold nothing else (a refused run)."""
        self.release()
        for folder in self.created:
            if visible_entries(folder):
                break
            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> Path:
        return self.folder

    def __exit__(self, kind: type[BaseException] | None, *rest: Any) -> None:
        if kind is None:
            self.release()
        else:
            self.discard()


def hold(folder: str | Path, flag: str) -> Hold:
    """Hold ``folder`` (made when missing) for this process, or refuse naming the process that holds it. As a
    context manager: released at the end of the block; on an exception the folders it made go again."""
    folder = Path(folder)
    check_links(folder, flag)
    with as_input_error():
        created = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = _try_lock(folder)
            if fd is None:
                raise _in_use(folder, flag)
            held = Hold(folder, fd, created)
            try:
                write_text(folder / PID_FILE, str(os.getpid()))
            except BaseException:
                held.discard()
                raise
        except BaseException:
            for made in created:
                if visible_entries(made):
                    break
                shutil.rmtree(made, ignore_errors=True)
            raise
    return held


# ---------------------------------------------------------------------------------------- folders made whole
@contextlib.contextmanager
def staging(final: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``final`` to build it in (named like the temporary files above, so that a
    killed run's is removed by the next); removed at the end of the block unless :func:`swap_in` took it."""
    final = Path(final)
    remove_leftovers(final)
    folder = _temporary(final)
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` where that is not available."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def swap_in(built: Path, final: Path) -> None:
    """Put the folder ``built`` in place of the folder ``final`` whole: a reader (or a kill) sees the old folder or
    the new one. The old one is removed."""
    if not os.path.lexists(final):
        os.rename(built, final)
    elif _exchange(built, final):
        shutil.rmtree(built)
    else:  # a short window without ``final``; the old folder stays, named as a leftover, until the rename
        old = _temporary(final)
        os.rename(final, old)
        os.rename(built, final)
        shutil.rmtree(old)
    _sync_folder(final.parent)
