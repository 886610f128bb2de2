"""The parser, the number types its options take, and the option groups several commands share."""

from __future__ import annotations

import argparse
import math

from ..targets import DEFAULT_MAX_HOURS


# Numeric options are checked where they are parsed: argparse's `type=` functions below
# refuse a bad value with one line naming the option, the value and what to pass (exit 2);
# what depends on the machine (cores, memory) is checked when the run is planned (cmd_run).
MAX_DEVICES = 1024  # more than any real host holds: a larger count is a typo
MAX_DURATION_S = 1e6  # ~11.6 days: LoadGen keeps min_duration in ms
MIN_DURATION_S = 0.001  # whole ms in the user.conf: anything shorter would be written, and read, as 0
MAX_BATCH_TIMEOUT_MS = 60_000.0


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the option, the value and the fix) and exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_range(lo: int, hi: int | None = None):
    want = f"a whole number from {lo} to {hi}" if hi is not None else f"a whole number of at least {lo}"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: pass {want}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"got {v}: pass {want}")
        return v

    parse.__name__ = "int"
    return parse


def float_range(lo: float, hi: float | None = None, lo_open: bool = True):
    want = (f"a finite number {'above' if lo_open else 'of at least'} {lo:g}"
            + (f" and at most {hi:g}" if hi is not None else ""))

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number: pass {want}") from None
        if not math.isfinite(v) or v < lo or (lo_open and v == lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"got {text}: pass {want}")
        return v

    parse.__name__ = "float"
    return parse


positive_int = int_range(1)
device_count = int_range(1, MAX_DEVICES)
batch_size = int_range(1, 65536)
finite_positive_float = float_range(0.0)
duration_s = float_range(MIN_DURATION_S, MAX_DURATION_S, lo_open=False)
wait_s = float_range(0.0, lo_open=False)


def path(text: str) -> str:
    """A file or directory option (--out, --cache, --plots). An empty one, often a shell variable
    that was never set, would otherwise mean the current directory."""
    if not text:
        raise argparse.ArgumentTypeError("got an empty path (an unset shell variable?): pass a path, "
                                         "or . for the current directory")
    return text


def device_list(text: str) -> list[int]:
    """--devices for scale: a comma-separated list of device counts."""
    want = f"a list like 1,2,4,8 of whole numbers from 1 to {MAX_DEVICES}"
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}: pass {want}") from None
    if not counts or min(counts) < 1 or max(counts) > MAX_DEVICES:
        raise argparse.ArgumentTypeError(f"got {text!r}: pass {want}")
    return counts


def add_max_hours(s: argparse.ArgumentParser, each: str = "") -> None:
    """--max-hours: how long a LoadGen test may be expected to take (run.length)."""
    s.add_argument("--max-hours", type=finite_positive_float, default=DEFAULT_MAX_HOURS, metavar="H",
                   help=f"refuse {each}a run whose LoadGen test would take longer than H hours, as estimated "
                   f"from the settings in force before it starts (default {DEFAULT_MAX_HOURS:g})")


def add_model_and_dataset(s: argparse.ArgumentParser) -> None:
    """What every benchmark run (run, and each point of scale) reads."""
    s.add_argument("--model", required=True)
    s.add_argument("--dataset", required=True)


def add_cluster(s: argparse.ArgumentParser, run: bool = False) -> None:
    s.add_argument("--cluster", metavar="ADDRESS",
                   help="run over the nodes of a Ray cluster (pip install 'visionperf[cluster]'): auto, the "
                   "head's address (host:port), or local:N (N node processes on this machine, for tests and "
                   "demos). One LoadGen here; each node runs its own devices (--devices per node) from its own "
                   "cache")
    if run:
        s.add_argument("--nodes", type=int_range(1, MAX_DEVICES),
                       help="with --cluster: use only the first NODES nodes (default: every node)")


def add_quiet(s: argparse.ArgumentParser, what: str) -> None:
    s.add_argument("--quiet", action="store_true",
                   help=f"no {what} (on a terminal it redraws in place; otherwise it is a line a minute)")
