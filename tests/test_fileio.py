"""Atomic writes, output locks and UTF-8 reading (clinsynth.data.fileio)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clinsynth.data.fileio import atomic_open, atomic_path, atomic_write_text, iter_lines, output_lock, read_text
from clinsynth.errors import ClinsynthError, DataError


def test_atomic_write_text_creates_parents_and_replaces_the_file(tmp_path: Path):
    path = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(path, "one\n")
    atomic_write_text(path, "two\n")
    assert path.read_text() == "two\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_intact_and_no_temporary_file(tmp_path: Path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, "new\n\udc80")  # a lone surrogate cannot be encoded: fails mid-write
    with pytest.raises(RuntimeError, match="boom"), atomic_open(path) as fh:
        fh.write("half of the new content")
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert path.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_concurrent_writers_use_distinct_temporary_files_and_the_last_one_wins(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    with atomic_open(path) as first:
        first.write("first\n")
        with atomic_open(path) as second:
            second.write("second\n")
            assert Path(first.name) != Path(second.name)
            assert Path(first.name).parent == path.parent  # same folder: the rename is atomic
        assert path.read_text() == "second\n"
    assert path.read_text() == "first\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_rewriting_keeps_the_file_mode(tmp_path: Path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    path.chmod(0o640)
    atomic_write_text(path, "new\n")
    assert path.stat().st_mode & 0o777 == 0o640


def test_output_lock_refuses_a_second_holder_and_is_released_on_exit(tmp_path: Path):
    path = tmp_path / "sub" / "out.jsonl"
    with output_lock(path) as lock:
        assert lock == tmp_path / "sub" / "out.jsonl.lock"
        with pytest.raises(ClinsynthError) as err, output_lock(path):
            pass
        message = str(err.value)
        assert f"{path} is being written by another run (lock {lock} held)" in message
        assert "choose another --out" in message
    with output_lock(path):  # free again
        pass


def test_output_lock_is_held_against_another_process(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom clinsynth.data.fileio import output_lock\n"
            f"with output_lock({str(path)!r}):\n    print('locked', flush=True)\n    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(ClinsynthError, match="being written by another run"), output_lock(path):
            pass
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    with output_lock(path):  # the kernel released it when the holder exited
        pass


def test_reading_names_the_line_with_invalid_utf8(tmp_path: Path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"\xef\xbb\xbfone\ntwo\nthr\xffee\n")
    with pytest.raises(DataError, match=r"x.txt:3: not valid UTF-8"):
        list(iter_lines(path))
    with pytest.raises(DataError, match=r"x.txt:3: not valid UTF-8"):
        read_text(path)
    path.write_bytes(b"\xef\xbb\xbfone\ntwo\n")
    assert read_text(path) == "one\ntwo\n"
    assert list(iter_lines(path)) == [(1, "one\n"), (2, "two\n")]


def test_atomic_open_is_for_text_only(tmp_path: Path):
    with pytest.raises(ValueError, match="mode 'wb'"), atomic_open(tmp_path / "x", mode="wb"):
        pass
    assert not os.listdir(tmp_path)


def _killed_writer_temp(folder: Path, target: str) -> tuple[Path, int]:
    """Run a writer in another process, kill -9 it inside its atomic write: the temp file it left, its pid."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from clinsynth.data.fileio import atomic_path\n"
        f"with atomic_path(Path({str(folder / target)!r})) as tmp:\n"
        "    tmp.write_text('x' * 1000)\n"
        "    print(tmp, flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        tmp = Path(proc.stdout.readline().strip())
    finally:
        proc.kill()  # SIGKILL: no finally block of the writer runs
        proc.wait()
    assert tmp.exists() and tmp.parent == folder
    return tmp, proc.pid


def test_temp_files_of_killed_writers_are_removed_by_the_next_writer(tmp_path: Path, monkeypatch):
    """Issue 26 row 13: kill -9 in an atomic write leaves a temp file; the next write into that folder removes it."""
    import clinsynth.data.fileio as fileio

    monkeypatch.setattr(fileio, "_CLEANED", set(), raising=False)  # as in a fresh process
    host = getattr(fileio, "_HOST", "host")
    left, dead_pid = _killed_writer_temp(tmp_path, "gold.jsonl")
    # Kept: a live writer's temp (this process), another host's, the old naming when recent, other files.
    live = tmp_path / f"a.jsonl.clinsynth-tmp-{host}-{os.getpid()}-0123abcd.tmp"
    other_host = tmp_path / f"b.jsonl.clinsynth-tmp-elsewhere-{dead_pid}-0123abcd.tmp"
    recent_old_style = tmp_path / f"c.jsonl.{dead_pid}.0123abcd.tmp"
    stale_old_style = tmp_path / f"d.jsonl.{dead_pid}.89abcdef.tmp.json"
    mine = tmp_path / "notes.tmp"
    for path in (live, other_host, recent_old_style, stale_old_style, mine):
        path.write_text("x")
    an_hour_ago = os.path.getmtime(stale_old_style) - 3600 - 10
    os.utime(stale_old_style, (an_hour_ago, an_hour_ago))

    atomic_write_text(tmp_path / "other.txt", "new\n")

    assert not left.exists() and not stale_old_style.exists()
    assert live.exists() and other_host.exists() and recent_old_style.exists() and mine.exists()
    assert (tmp_path / "other.txt").read_text() == "new\n"


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_leaves_the_previous_output_and_no_temp_file(tmp_path: Path, monkeypatch):
    """Issue 26 row 12: one clear error naming the path (a ClinsynthError: exit 2), old content, no temp file."""
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(ClinsynthError) as err:
        atomic_write_text(path, "new\n")
    assert str(err.value) == (
        f"cannot write {path}: the disk is full (No space left on device); the previous out.jsonl is unchanged"
    )
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    monkeypatch.undo()

    # A write failing inside the caller's block is reported the same way; other errors there pass unchanged.
    with pytest.raises(ClinsynthError, match=f"cannot write {path}: the disk is full"):  # noqa: PT012
        with atomic_open(path) as fh:
            fh.write("new\n")
            _enospc()
    with pytest.raises(FileNotFoundError):  # noqa: PT012
        with atomic_open(path):
            (tmp_path / "missing").read_text()
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_an_output_under_a_file_is_one_clear_error(tmp_path: Path):
    """A read-only folder as root cannot be made with chmod; a file where the folder should be fails alike."""
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "out.jsonl"
    with pytest.raises(ClinsynthError, match=f"cannot write {target}: a part of the path is a file"):
        atomic_write_text(target, "new\n")
    with pytest.raises(ClinsynthError, match=f"cannot write {target}: a part of the path is a file"):
        with output_lock(target):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_full_disk_mid_line_leaves_no_torn_line(tmp_path: Path):
    from clinsynth.data.records import ResumableWriter

    path = tmp_path / "out.jsonl"
    with ResumableWriter(path) as writer:
        writer.write({"id": "a", "text": "first"})
        real = writer._fh

        class HalfFull:
            """Writes half the line to the file, then the disk is full."""

            def write(self, text: str) -> None:
                real.write(text[: len(text) // 2])
                real.flush()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            def close(self) -> None:
                real.close()

        writer._fh = HalfFull()
        with pytest.raises(ClinsynthError, match=f"cannot write {path}: the disk is full .*; the previous out.jsonl"):
            writer.write({"id": "b", "text": "second"})
    assert path.read_text() == '{"id": "a", "text": "first"}\n'
