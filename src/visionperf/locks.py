"""One exclusive lock per directory: `DIR/.visionperf.lock`, so two visionperf processes never
write the same results directory or build the same cache at once.

The lock is `fcntl.flock(LOCK_EX | LOCK_NB)` on an open file that also records the holder's pid
and command line (for the message the second process prints). The kernel drops a flock when the
last descriptor of its open file is closed, so a lock whose holder died (even by kill -9, or
os._exit) is free by construction: there is no stale lock to detect or break, only a stale
file, which the next holder simply locks. The descriptor is opened close-on-exec, so programs
the holder starts do not keep it; a child made by a bare fork() would (visionperf's pools use
spawn).

The holder unlinks the file before it lets go, so a finished run leaves no lock file behind.
Because another process may have opened the old file just before the unlink, `acquire`
checks after locking that the path still names the file it locked, and starts over if not.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

from .errors import UserError

LOCK_NAME = ".visionperf.lock"


class Busy(UserError):
    """The directory is locked by another process (pid and command in the message)."""

    def __init__(self, message: str, pid: int | None, directory: Path):
        super().__init__(message)
        self.pid = pid
        self.directory = directory


def holder(directory: str | Path) -> tuple[int | None, str]:
    """(pid, command) recorded in DIRECTORY's lock file; (None, "") when unreadable or empty."""
    for _ in range(20):  # the holder writes its pid just after it locks: give it a moment
        try:
            text = (Path(directory) / LOCK_NAME).read_bytes().decode("utf-8", "replace")
        except OSError:
            return None, ""
        pid, _, cmd = text.partition("\n")
        if pid.strip().isdigit():
            return int(pid), cmd.strip()
        time.sleep(0.01)
    return None, ""


def _holder_line() -> bytes:
    """This process's pid and command line, as the lock file records them. Arguments are bytes
    to the kernel: one that is not UTF-8 (a Latin-1 file name) is written as it came."""
    args = b" ".join(os.fsencode(a) for a in ["visionperf", *sys.argv[1:]])
    return f"{os.getpid()}\n".encode() + args + b"\n"


class DirLock:
    """An exclusive lock on DIRECTORY (made, with its parents, if missing).

    BUSY is the one-line message for a second process, formatted with {dir}, {pid} and {cmd}.
    Directories this lock had to create are removed again on release if they are still empty,
    so a run refused before it wrote anything leaves nothing behind."""

    def __init__(self, directory: str | Path,
                 busy: str = "{dir} is in use by another visionperf (pid {pid}: {cmd}): wait for it to finish"):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.busy = busy
        self._fd: int | None = None
        self._created: list[Path] = []

    def acquire(self, wait: float | None = None) -> "DirLock":
        """Take the lock; refuse at once with Busy if it is held, or after WAIT seconds if given."""
        missing = []
        d = self.directory
        while not d.exists() and d != d.parent:
            missing.append(d)
            d = d.parent
        self.directory.mkdir(parents=True, exist_ok=True)
        self._created = [m for m in missing if m.is_dir()]  # deepest first
        deadline = time.monotonic() + (wait or 0)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    self._remove_created()
                    pid, cmd = holder(self.directory)
                    msg = self.busy.format(dir=self.directory, pid=pid if pid else "unknown", cmd=cmd or "?")
                    if wait:
                        msg += f" (still held after waiting {wait:g} s)"
                    raise Busy(msg, pid, self.directory) from None
                time.sleep(0.1)
                continue
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:  # its last holder unlinked it as we locked: start over
                same = False
            if not same:
                os.close(fd)
                continue
            self._fd = fd
            try:
                os.ftruncate(fd, 0)
                os.write(fd, _holder_line())
            except BaseException:
                self.release()
                raise
            return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()  # while still holding it: see the module's docstring
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        self._remove_created()

    def _remove_created(self) -> None:
        for d in self._created:
            try:
                d.rmdir()  # only if empty
            except OSError:
                break
        self._created = []

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "DirLock":
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()
