"""The check every hostile-input case of issue 23 shares: visionperf, in its own process, refuses
the input with one `visionperf: error:` line and exit 2, in bounded time, and leaves no process
behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from injection import finish, no_survivors, one_line, start


def refused(*args, env: dict | None = None, within_s: float = 120, **kw) -> str:
    """Run `visionperf ARGS`; return its one error line (assertions say what went wrong)."""
    t = time.monotonic()
    p, token = start(list(args), env=env, **kw)
    stdout, stderr = finish(p, within_s)
    assert time.monotonic() - t < within_s, "did not end in time"
    assert p.returncode == 2, (p.returncode, stdout, stderr)
    line = one_line(stderr)
    assert line.startswith("visionperf: error: "), line
    assert not no_survivors(token), "a process outlived the command"
    return line


# A preprocess held before it publishes until the test lets it go: it reads a FIFO, whose open
# blocks until the test opens the other end. A build that finishes by itself could beat the
# test's next command under load; this one cannot.
_HELD_BUILD = """
import runpy, sys
from visionperf import preprocess
gate_path = sys.argv.pop(1)
publish = preprocess._publish
def held(*args, **kwargs):
    with open(gate_path) as gate:
        gate.read()
    return publish(*args, **kwargs)
preprocess._publish = held
sys.argv[0] = "visionperf"
runpy.run_module("visionperf", run_name="__main__")
"""


def open_gate(fifo: Path, first: subprocess.Popen, timeout: float = 60) -> int:
    """The write end of FIFO, opened once the held build waits on its read end (then the build has
    done every chunk and not published)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)


def held_preprocess(args: list, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """`visionperf preprocess ...` (ARGS from the command name on), held before it publishes
    until open_gate's descriptor is closed; returns the process and its FIFO."""
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    p = subprocess.Popen([sys.executable, "-c", _HELD_BUILD, str(fifo), *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p, fifo
