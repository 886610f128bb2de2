"""local:N: N Ray nodes started on this machine for tests and demos, held by a keeper process
(keeper.py)."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from contextlib import suppress

from ..errors import UserError

KEEPER_TIMEOUT_S = 180.0  # the keeper starting the nodes


class LocalCluster:
    """local:N: N Ray nodes on this machine, held by a keeper process (keeper.py) that takes them
    all down with it, and goes when this process closes it or dies."""

    def __init__(self, n: int, log):
        t0 = time.perf_counter()
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (the keeper writes it while it lives)
        self._proc = subprocess.Popen([sys.executable, "-m", "visionperf.cluster.keeper", str(n), str(os.getpid())],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                      start_new_session=True)
        line = _read_line(self._proc.stdout, KEEPER_TIMEOUT_S)
        try:
            self.address = json.loads(line)["address"]
        except (ValueError, KeyError, TypeError):
            self.shutdown()
            raise UserError(f"--cluster local:{n}: Ray could not start {n} node process(es) here: "
                            f"{self._last_error() or 'no reason given'}") from None
        log(f"cluster local:{n}: started {n} node process(es) on this machine in {time.perf_counter() - t0:.1f} s")

    def _last_error(self) -> str:
        self._err.seek(0)
        lines = [ln for ln in self._err.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1].strip()[:300] if lines else ""

    def shutdown(self, timeout_s: float = 30.0) -> None:
        if self._proc.poll() is None:
            with suppress(OSError):
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._err.close()


def _read_line(stream, timeout_s: float) -> str:
    """One line from STREAM (a child's stdout), or "" if none comes within TIMEOUT_S."""
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    try:
        if not sel.select(timeout_s):
            return ""
        return stream.readline().decode(errors="replace")
    finally:
        sel.close()
