"""Child processes never outlive visionperf.

A preprocessing worker or a `scale` point's `visionperf run` must end when the process that
started it ends, however that ends (Ctrl-C, SIGTERM, a closed terminal's SIGHUP, kill -9, the
OOM killer). On Linux the kernel does it (PR_SET_PDEATHSIG: a signal to the child when its
parent dies); elsewhere, or if the parent died before the child asked, a watcher thread in the
child notices that its parent changed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from .errors import Terminated

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _find_prctl():
    """libc's prctl, looked up once, here: between fork and exec (subprocess's preexec_fn) only
    the call itself is safe, not an import or a dlopen, which take locks another thread may hold."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _find_prctl()


def _prctl_deathsig(sig: int) -> None:
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def die_with(parent: int, sig: int = signal.SIGKILL) -> None:
    """Called in a child: receive SIG when PARENT dies (and exit at once if it already has)."""
    _prctl_deathsig(sig)
    if os.getppid() != parent:  # it died before the prctl took hold
        os._exit(1)

    def watch():
        while os.getppid() == parent:
            time.sleep(0.25)
        os.kill(os.getpid(), sig)

    threading.Thread(target=watch, name="visionperf-parent-watch", daemon=True).start()


def run_child(cmd: list[str], grace_s: float = 10.0) -> subprocess.CompletedProcess:
    """subprocess.run(CMD), capturing its output, with the child bound to this process: it gets
    SIGTERM if this process dies, and if this process is interrupted (KeyboardInterrupt, or
    Terminated: SIGTERM, SIGHUP) the child is sent the same stop (SIGINT's is SIGTERM) and given
    GRACE_S to clean up before it is killed."""
    parent = os.getpid()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: _prctl_deathsig(signal.SIGTERM) if os.getppid() == parent else os._exit(1))
    try:
        out, err = p.communicate()
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt) and not isinstance(e, Terminated):
            # Ctrl-C at a terminal reaches the whole process group: the child has it already and
            # is cleaning up; a second signal now would cut that short. Give it a moment first.
            try:
                p.communicate(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        if p.poll() is None:
            p.send_signal(e.signum if isinstance(e, Terminated) else signal.SIGTERM)
            try:
                p.communicate(timeout=grace_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
        raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)
