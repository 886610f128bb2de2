"""What every fault test checks after it stopped or broke a visionperf process: it ended in
bounded time, said one line, exited with the right status, left nothing half-written, and left
no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129, signal.SIGKILL: -9}
FIRST_WORD = {signal.SIGINT: "visionperf: interrupted", signal.SIGTERM: "visionperf: terminated",
              signal.SIGHUP: "visionperf: terminated"}


def start(args: list, env: dict | None = None, prog: list | None = None, **kw) -> tuple[subprocess.Popen, str]:
    """`visionperf ARGS` in a new process (or PROG ARGS: e.g. tests/fake_gpu.py, visionperf on
    fake GPUs), tagged with a token every descendant inherits (in its environment) so that
    survivors can be found after it dies."""
    token = uuid.uuid4().hex
    p = subprocess.Popen([*(map(str, prog) if prog else [sys.executable, "-m", "visionperf"]), *map(str, args)],
                         env={**os.environ, **(env or {}), "VISIONPERF_FAULT_TOKEN": token},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)
    return p, token


def tagged(token: str) -> list[int]:
    """Live processes (not zombies) carrying TOKEN in their environment."""
    found = []
    needle = f"VISIONPERF_FAULT_TOKEN={token}".encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(d.name))
        except OSError:
            pass
    return found


def no_survivors(token: str, within_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while (left := tagged(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def finish(p: subprocess.Popen, timeout: float = 30) -> tuple[str, str]:
    try:
        return p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def half_written(root: Path) -> list[Path]:
    """Anything under ROOT a crash could have left looking like a result: partial run
    directories, temporary files, replaced results not yet deleted, lock files."""
    bad = []
    for p in root.rglob("*"):
        n = p.name
        if ".partial-" in n or ".tmp" in n or ".old-" in n or n == ".visionperf.lock":
            bad.append(p)
    return bad


def wait_for_file(p: subprocess.Popen, root: Path, pattern: str, timeout: float = 60) -> None:
    """Wait until a file matching PATTERN (a glob under ROOT) exists, P still running."""
    deadline = time.monotonic() + timeout
    while not list(root.glob(pattern)):
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.02)


def stop(p: subprocess.Popen, sig: int) -> tuple[str, float]:
    """Send SIG to the running P and wait: (its stderr, seconds from the signal to its exit)."""
    assert p.poll() is None, p.communicate()
    t = time.monotonic()
    p.send_signal(sig)
    _, stderr = finish(p)
    return stderr, time.monotonic() - t
