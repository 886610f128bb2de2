"""The check every hostile-input case of issue 23 shares: visionperf, in its own process, refuses
the input with one `visionperf: error:` line and exit 2, in bounded time, and leaves no process
behind."""

from __future__ import annotations

import time

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
