"""The `visionperf` command. User errors end as one line on stderr and exit status 2.

Each command's options (`add_<command>_args`) sit beside its function (`cmd_<command>`) in a module
named for what the commands there do; options.py holds the number types and the shared option groups."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from ..errors import STOP_SIGNALS, Terminated, UserError
from .campaign import add_campaign_args
from .data import add_build_model_args, add_preprocess_args, add_quantize_args, add_sample_data_args
from .options import Parser
from .publish import add_accuracy_args, add_report_args, add_submission_args
from .run import add_include_dir_args, add_run_args
from .study import add_plan_args, add_scale_args, add_topology_args


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="visionperf", description="MLPerf Inference vision benchmarks on the real LoadGen, across many devices.")
    sub = p.add_subparsers(dest="command", required=True)
    # in the order `visionperf --help` lists them: from data to results
    for add_args in (add_sample_data_args, add_build_model_args, add_preprocess_args, add_quantize_args,
                     add_include_dir_args, add_topology_args, add_plan_args, add_run_args, add_scale_args,
                     add_report_args, add_submission_args, add_accuracy_args, add_campaign_args):
        add_args(sub)
    return p


def _on_stop_signal(signum, frame):
    # One stop request, one cleanup: a second signal (a scheduler repeating itself, a group
    # signal plus `scale`'s own to its child, a hangup after a SIGTERM) must not interrupt the
    # cleanup the first started.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    _silence_a_hung_up_terminal()
    raise Terminated(signum)


def _silence_a_hung_up_terminal() -> None:
    """Point stdout and stderr at /dev/null where they are a terminal that hung up: every write
    there fails (EIO), and the cleanup must not die of its own progress display or message."""
    import errno

    for fd in (1, 2):
        try:
            os.write(fd, b"")
        except OSError as e:
            if e.errno == errno.EIO:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)


# What an interrupted command leaves, for the one line it prints.
KEPT = {
    "run": "nothing of this run was kept (no partial results)",
    "scale": "runs that finished are kept under --out, scaling.json only when every point has run",
    "preprocess": "finished chunks of the cache are kept: rerun the same command to resume",
    "sample-data": "images written so far are kept, but the dataset is not usable until a rerun "
                   "writes its list file",
    "build-model": "no model was written",
    "quantize": "no model was written",
    "submission": "no tree was written",
    "accuracy": "no accuracy.txt was written",
    "report": "plots already written are complete; the others were not written",
}


# The options that say where a command writes, most specific first where one holds another.
OUTPUT_OPTIONS = ("cache", "plots", "out")


def _output_option(args: argparse.Namespace, filename: str | None) -> tuple[str, str | None]:
    """(--OPTION, its value): the output option whose directory holds FILENAME (the deepest,
    where one lies inside another), else the command's main output (--out; report's --plots)."""
    best = next(((f"--{n}", getattr(args, n)) for n in ("out", "plots") if hasattr(args, n)), ("--out", None))
    if filename:
        target = os.path.abspath(filename)
        depth = -1
        for name in OUTPUT_OPTIONS:
            value = getattr(args, name, None)
            if not value:
                continue
            root = os.path.abspath(value)
            if (target == root or target.startswith(root.rstrip(os.sep) + os.sep)) and len(root) > depth:
                best, depth = (f"--{name}", value), len(root)
    return best


def _os_error_line(e: OSError, args: argparse.Namespace) -> str:
    """One line for a file the machine would not let us write (or read): which file, why, the fix
    (naming the option that chose where: --out, --cache, --plots). A failed write() names no
    file: then the command's --out is where it was writing."""
    import errno

    option, value = _output_option(args, e.filename)
    where = e.filename or (f"writing under {value}" if value else "writing a file")
    if e.filename2:
        where = f"{e.filename} -> {e.filename2}"
    why = e.strerror or str(e)
    fix = {
        errno.EACCES: f"choose a location you can write (another {option}) or fix its permissions",
        errno.EPERM: f"choose a location you can write (another {option}) or fix its permissions",
        errno.EROFS: f"the file system is read-only: choose another {option}",
        errno.ENOSPC: f"the disk is full: free space there or choose another {option}",
        errno.EDQUOT: f"your disk quota is used up: free space there or choose another {option}",
        errno.EFBIG: "a file size limit (ulimit -f) was reached: raise it or write less",
        errno.ENOTDIR: f"a file stands where a directory is needed: remove it or choose another {option}",
        errno.EEXIST: f"a file is in the way: remove it or choose another {option}",
        errno.EISDIR: "a directory stands where a file is needed: remove it or choose another path",
        errno.ENOENT: "check the path",
        errno.EMFILE: "too many open files: raise the limit (ulimit -n)",
    }.get(e.errno, "check the path and the disk")
    return f"{where}: {why}: {fix}"


def _interrupted(e: KeyboardInterrupt, command: str) -> int:
    """The one line an interrupted command prints, and its exit status (143 for SIGTERM, 129 for
    SIGHUP, 130 for ^C)."""
    code, what = (128 + e.signum, "terminated") if isinstance(e, Terminated) else (130, "interrupted")
    kept = KEPT.get(command, "")
    print(f"visionperf: {what}" + (f": {kept}" if kept else ""), file=sys.stderr)
    engine = sys.modules.get("visionperf._engine")
    if engine is not None and engine.loadgen_abandoned():
        # LoadGen cannot end a Server or stream test early: its thread is still running,
        # and its static logger would abort the process on a normal exit.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .. import progress

    progress.set_quiet(getattr(args, "quiet", False))
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _on_stop_signal)
    try:
        return args.func(args)
    except UserError as e:
        print(f"visionperf: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        return _interrupted(e, args.command)
    except ImportError as e:
        # A stop signal while a compiled module initialises (ONNX Runtime's, at a command's start)
        # reaches us as that module's ImportError, raised from the KeyboardInterrupt.
        stop = e.__cause__ or e.__context__
        if isinstance(stop, KeyboardInterrupt):
            return _interrupted(stop, args.command)
        raise
    except BrokenPipeError as e:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            # stdout closed early (`visionperf report DIR | head`): nothing to say to anyone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        print(f"visionperf: error: {_os_error_line(e, args)}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"visionperf: error: {_os_error_line(e, args)}", file=sys.stderr)
        return 2
