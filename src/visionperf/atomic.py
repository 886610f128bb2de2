"""Files appear whole or not at all.

Every file visionperf publishes is written under a temporary name beside its final one
(`.NAME.tmp-PID`: hidden, and never mistaken for a result) and renamed into place, which POSIX
makes atomic within a directory. A failure or an interrupt while writing removes the temporary
file, so the only thing a crash can leave is a hidden `.tmp-PID` from a process killed with
SIGKILL, never a final name holding half a file."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def temporary_name(path: str | Path, suffix: str = "") -> Path:
    """Where PATH is written before its rename (SUFFIX keeps an extension writers look at)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


@contextmanager
def replacing(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """`with replacing(p) as tmp:` write TMP; on leaving the block it becomes P, or on any
    exception (KeyboardInterrupt included) it is removed and P is left as it was. A failed
    write says which file it was writing (a full disk's write() names none): P."""
    path = Path(path)
    tmp = temporary_name(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def replace_dir(src: str | Path, dst: str | Path) -> None:
    """Put directory SRC where DST is, replacing what DST held: the old one is set aside under a
    hidden name (`.DST.old-PID`) first and put back if the swap fails, so an interrupt never
    leaves neither; it is deleted only once SRC is in place."""
    import shutil

    src, dst = Path(src), Path(dst)
    if not dst.exists():
        os.replace(src, dst)
        return
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(old, dst)
        raise
    shutil.rmtree(old, ignore_errors=True)
