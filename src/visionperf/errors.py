"""The one exception type that reaches the user as a single line, not a traceback."""


class UserError(Exception):
    """Bad input from the user: the message names the file (or flag) and the fix."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where SIGINT raises KeyboardInterrupt (cli.main installs the handler), so
    that every cleanup an interrupt runs (a partial run removed, a cache build's finished chunks
    kept, locks freed, worker pools and child runs stopped) also runs for `kill` or a job
    scheduler's stop; the command then exits 143."""
