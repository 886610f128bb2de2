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
    exception (KeyboardInterrupt included) it is removed and P is left as it was."""
    path = Path(path)
    tmp = temporary_name(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)
