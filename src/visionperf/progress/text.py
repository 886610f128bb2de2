"""What every display shares: --quiet, whether a console redraws in place, how times read."""

from __future__ import annotations

LINE_EVERY_S = 60.0  # one plain line this often when the output is not a terminal


_quiet = False  # --quiet, for displays made deep inside a command (the preprocessing bar)


def set_quiet(on: bool) -> None:
    global _quiet
    _quiet = bool(on)


def quiet() -> bool:
    """Whether the command was given --quiet."""
    return _quiet


def is_live(console) -> bool:
    """Whether CONSOLE can redraw a line in place (a terminal that is not `dumb`)."""
    return bool(console.is_terminal) and not console.is_dumb_terminal


def fmt_duration(s: float) -> str:
    """A duration as people say it: 4.2 s, 42 s, 3 min 05 s, 10 min, 1 h 02 min."""
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s" if s >= 9.5 else f"{s:.1f} s"
    if s < 3600:
        m, r = divmod(round(s), 60)
        return f"{m} min {r:02d} s" if r else f"{m} min"
    h, r = divmod(round(s) // 60, 60)
    return f"{h} h {r:02d} min" if r else f"{h} h"


def fmt_latency(s: float) -> str:
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"
