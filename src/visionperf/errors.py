"""The one exception type that reaches the user as a single line, not a traceback."""


class UserError(Exception):
    """Bad input from the user: the message names the file (or flag) and the fix."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where SIGINT raises KeyboardInterrupt (cli.main installs the handler), so
    that every cleanup an interrupt runs (a partial run removed, a cache build's finished chunks
    kept, locks freed, worker pools and child runs stopped) also runs for `kill` or a job
    scheduler's stop, or a closed terminal; the command then exits 128 + SIGNUM (143, 129)."""

    def __init__(self, signum: int = 15) -> None:  # SIGTERM
        super().__init__(signum)
        self.signum = int(signum)
