"""The one exception type that reaches the user as a single line, not a traceback, and the
signals that stop a command as Ctrl-C does."""

import signal

# `kill`'s SIGTERM, and SIGHUP (the terminal closed, an SSH session dropped): each stops any
# visionperf process as Ctrl-C does (the CLI, a cluster's keeper, what saves handlers around Ray).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class UserError(Exception):
    """Bad input from the user: the message names the file (or flag) and the fix."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where SIGINT raises KeyboardInterrupt (cli.main installs the handler), so
    that every cleanup an interrupt runs (a partial run removed, a cache build's finished chunks
    kept, locks freed, worker pools and child runs stopped) also runs for `kill` or a job
    scheduler's stop, or a closed terminal; the command then exits 128 + SIGNUM (143, 129)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = int(signum)
