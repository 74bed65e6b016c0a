"""Safe file IO: atomic writes, output locks and UTF-8 reading that names the bad line.

Atomic writes go to a temporary file in the target's folder (same file system, so the
final ``os.replace`` is atomic), are fsynced, then renamed over the target: a reader or
a killed run sees the old file or the new one, never half of one. Temporary names are
unique per process and call, so concurrent runs never share (and clobber) one.

A writer killed with ``kill -9`` cannot remove its temporary file, so the names say whose
they are (``<name>.clinsynth-tmp-<host>-<pid>-<random><suffix>``): the first atomic write
of a later process into that folder removes those of this host whose process is gone.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from clinsynth.errors import ClinsynthError, DataError, OutputError

# Text is read with errors="surrogateescape": an invalid byte becomes one of these
# lone surrogates, which valid UTF-8 never decodes to, so a line can be checked cheaply.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")

log = logging.getLogger(__name__)

_HOST = re.sub(r"[^A-Za-z0-9]+", "_", socket.gethostname()).strip("_")[:32] or "host"  # short: names have a limit
_TEMP_NAME = re.compile(r"\.clinsynth-tmp-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]{8}(?:\.|$)")
# Names before the host was recorded: <name>.<pid>.<8 hex>.tmp[.json]. With no host to
# check, they are removed only once old enough that no live writer elsewhere can own them.
_OLD_TEMP_NAME = re.compile(r"\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp(?:\.json)?$")
OLD_TEMP_MIN_AGE_S = 3600.0
_CLEANED: set[str] = set()  # folders this process has cleaned (dead writers only die before we look)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; best effort (some file systems refuse)."""
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


# Errors that mean "this output cannot be written here" even when raised while the caller
# writes (a write or a close that flushes); other errors of the caller's block pass unchanged.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
_HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file would be too large for this file system",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "the folder is not writable",
    errno.EPERM: "the folder is not writable",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a part of the path is a file, not a folder",
}


def output_error(path: Path | str, exc: OSError, existed: bool | None = None) -> OutputError:
    """One clear error for an output that could not be written: the path, why, and what is left."""
    path = Path(path)
    existed = path.is_file() if existed is None else existed
    why = _HINTS.get(exc.errno or 0, exc.strerror or str(exc))
    detail = f" ({exc.strerror})" if exc.strerror and exc.strerror.lower() != why else ""
    left = f"the previous {path.name} is unchanged" if existed else "nothing was written there"
    error = OutputError(f"cannot write {path}: {why}{detail}; {left}")
    error.errno = exc.errno  # (not filename or strerror: OSError would print those instead of the message)
    return error


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's; anything odd: assume alive
        return True
    return True


def remove_stale_temps(folder: Path | str) -> list[Path]:
    """Remove temporary files that writers which died (``kill -9``) left in ``folder``; the removed paths.

    Only files named by this module: of this host with a process that is gone, or of the
    old naming (no host) with a process that is gone and older than an hour. A live
    writer's file, another host's (a shared folder) or a file of another program is kept.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.search(entry.name)
        old = None if match else _OLD_TEMP_NAME.search(entry.name)
        if match is not None:
            if match["host"] != _HOST or _pid_alive(int(match["pid"])):
                continue
        elif old is None or _pid_alive(int(old["pid"])):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if old is not None and time.time() - entry.stat(follow_symlinks=False).st_mtime < OLD_TEMP_MIN_AGE_S:
                continue
            os.unlink(entry.path)
        except OSError:
            continue  # gone meanwhile, or not ours to remove: leave it
        removed.append(Path(entry.path))
    if removed:
        log.warning("removed %d temporary file(s) of killed writers in %s", len(removed), folder)
    return removed


def _new_temp(path: Path, suffix: str) -> Path:
    """Create an empty, uniquely named file next to ``path`` and return its name.

    ``os.open`` with mode 0o666 lets the umask decide permissions, as a plain ``open`` would
    (``tempfile`` would make it 0o600); an existing target's mode is kept. The first time
    a process writes into a folder, temporary files of killed writers there are removed.
    """
    folder = str(path.parent.resolve())
    if folder not in _CLEANED:
        _CLEANED.add(folder)
        remove_stale_temps(path.parent)
    while True:
        tmp = path.with_name(f"{path.name}.clinsynth-tmp-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}{suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            if path.exists():
                os.fchmod(fd, stat.S_IMODE(path.stat().st_mode))
        finally:
            os.close(fd)
        return tmp


@contextmanager
def atomic_path(path: Path | str, suffix: str = ".tmp") -> Iterator[Path]:
    """A unique temporary path to write (by any means) that replaces ``path`` on success.

    For writers that want a file name rather than a handle (``Dataset.to_parquet``,
    ``program.save``). ``suffix`` ends the temporary name, for tools that go by it
    (``.tmp.json``). On an exception the temporary file is removed and ``path`` untouched.
    """
    path = Path(path)
    existed = path.is_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temp(path, suffix)
    except OSError as exc:
        raise output_error(path, exc, existed) from exc
    try:
        try:
            yield tmp
        except OSError as exc:
            if exc.errno in _WRITE_ERRNOS and not isinstance(exc, OutputError):
                raise output_error(path, exc, existed) from exc
            raise
        try:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)  # the data is on disk before the rename makes it the target
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            raise output_error(path, exc, existed) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextmanager
def atomic_open(path: Path | str, mode: str = "w", encoding: str = "utf-8") -> Iterator[TextIO]:
    """A text handle whose content replaces ``path`` only when the block ends without error."""
    if mode not in ("w", "wt"):
        raise ValueError(f"atomic_open writes text; mode {mode!r} is not supported")
    with atomic_path(path) as tmp, tmp.open(mode, encoding=encoding) as fh:
        yield fh


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see the module docstring)."""
    with atomic_open(path, encoding=encoding) as fh:
        fh.write(text)


def lock_path(path: Path | str) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextmanager
def output_lock(path: Path | str) -> Iterator[Path]:
    """Hold an exclusive lock on ``<path>.lock`` so that only one run writes ``path``.

    Non-blocking: if another run (or another writer in this process) holds it, this raises
    a :class:`ClinsynthError` at once rather than waiting or letting the writes interleave.
    The lock file is removed on release. The kernel drops the lock when its holder exits,
    even when killed, so the lock file a killed run leaves is harmless and is reused.
    """
    path = Path(path)
    lock = lock_path(path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = _lock_fd(path, lock)
    except ClinsynthError:
        raise
    except OSError as exc:  # a read-only folder, or a file where a folder should be
        raise output_error(path, exc) from exc
    try:
        yield lock
    finally:
        # Removed while still held: a run that opened this file meanwhile finds it unlinked
        # once it gets the lock, and takes a new one (see _lock_fd).
        lock.unlink(missing_ok=True)
        os.close(fd)  # releases the lock


def _lock_fd(path: Path, lock: Path) -> int:
    """An open descriptor of ``lock`` holding its exclusive lock; a ClinsynthError if another holds it."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ClinsynthError(
                f"{path} is being written by another run (lock {lock} held); wait for it or choose another --out"
            ) from None
        if _same_file(fd, lock):
            return fd
        os.close(fd)  # its holder removed it between our open and our lock: the lock is a new file


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def check_file(path: Path, what: str = "input file") -> None:
    """A clear error for a missing file or a folder where a file was expected."""
    if not path.exists():
        raise DataError(f"{what} not found", path=path)
    if path.is_dir():
        raise DataError("is a directory, expected a file", path=path)


def open_text(path: Path | str, newline: str | None = None) -> TextIO:
    """Open a UTF-8 file for reading; a byte-order mark is dropped.

    Invalid bytes do not fail here but are escaped, so :func:`check_utf8` can name the line
    they are on (a strict decoder fails on a buffer, not a line).
    """
    return Path(path).open(encoding="utf-8-sig", errors="surrogateescape", newline=newline)


def check_utf8(text: str, path: Path | str, line: int | None) -> None:
    """Raise a DataError naming ``path`` and ``line`` if ``text`` (from :func:`open_text`) had invalid bytes."""
    if _ESCAPED_BYTE.search(text):
        raise DataError("not valid UTF-8 (save the file as UTF-8)", path=path, line=line)


def iter_lines(path: Path | str) -> Iterator[tuple[int, str]]:
    """Lines of a UTF-8 text file with their 1-based numbers; invalid UTF-8 is a DataError naming the line."""
    with open_text(path) as fh:
        for line_no, line in enumerate(fh, 1):
            check_utf8(line, path, line_no)
            yield line_no, line


def read_text(path: Path | str) -> str:
    """A whole UTF-8 file (byte-order mark dropped); invalid UTF-8 is a DataError naming the line."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            "not valid UTF-8 (save the file as UTF-8)", path=path, line=data.count(b"\n", 0, exc.start) + 1
        ) from exc
