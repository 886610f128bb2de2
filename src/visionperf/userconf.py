"""LoadGen settings: the mlperf.conf compiled into the wheel, plus exactly one user.conf.

`--target-qps` and `--duration` are conveniences: they are written into the user.conf that the
run uses (and that is kept beside its logs), never set behind LoadGen's back, so the logs and
the conf always agree. LoadGen reads its embedded mlperf.conf only on the first FromConfig call
in a process, so a process runs one test (`visionperf run` does).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import UserError

_from_config_calls = 0


@dataclass
class Overrides:
    target_qps: float | None = None  # Offline/Server: expected QPS; SS/MS: sets the expected latency
    duration_s: float | None = None  # min_duration; for Offline it also lifts min_query_count
    performance_sample_count: int | None = None  # only when the dataset is smaller than the rule
    notes: tuple[str, ...] = ()


def read_user_conf(path: str | Path | None) -> str:
    if not path:
        return ""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot read user.conf {p}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{p} is not UTF-8 text (byte {e.start}): save it as plain text "
                        "(LoadGen keys and numbers are ASCII)") from None
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith("#"):
            continue
        if s and not re.fullmatch(r"[\w*.-]+\.[\w*]+\.\w+\s+=\s+\S+", s):
            raise UserError(f"{p}:{n}: expected 'model.scenario.key = value' (spaces around '=', "
                            f"as LoadGen reads it), got {line.strip()!r}")
    kv = parse_conf(text, str(p))  # what LoadGen itself would refuse, refused now, with its line
    for key, value in kv.items():
        problem = unread_key(key) or bad_value(key, value)
        if problem:
            n = max(i for i, line in enumerate(text.splitlines(), 1) if line.split()[:1] == [key])  # the last wins
            raise UserError(f"{p}:{n}: {problem}")
    return text


# Bounds beyond "a finite number of at least 0", which every key LoadGen reads needs: its integer
# keys go through strtoull, so -5 wraps to 2**64 - 5 (min_duration = -5 ends in a segfault), and
# its double keys take nan. (lowest, lowest excluded, highest) by key name.
VALUE_BOUNDS = {
    "target_qps": (0.0, True, None),
    "samples_per_query": (1.0, False, None),
    "target_latency_percentile": (0.0, True, 1.0),
    "accuracy_log_probability": (0.0, False, 1.0),
}


# The streams' target_latency is the expected latency of a query: LoadGen issues 1 / it queries a
# second, so 0 would make it generate queries without end (std::bad_alloc, or the OOM killer).
STREAM_LATENCY_SCENARIOS = ("SingleStream", "MultiStream", "*")


def bad_value(key: str, text: str) -> str | None:
    """Why the value TEXT of KEY ('model.scenario.name') cannot be what the user meant, or None;
    the same bounds the command-line options have."""
    scenario, name = (key.rsplit(".", 2)[-2:] if key.count(".") >= 2 else ("*", key))
    lo, lo_open, hi = VALUE_BOUNDS.get(name, (0.0, False, None))
    if name == "target_latency" and scenario in STREAM_LATENCY_SCENARIOS:
        lo, lo_open = 0.0, True
    value = float(int(text, 16)) if text.lower().lstrip("+-").startswith("0x") else float(text)
    negative = text.startswith("-")  # -0 too: strtoull wraps it like any other
    if not negative and math.isfinite(value) and (value > lo or (value == lo and not lo_open)) \
            and (hi is None or value <= hi):
        return None
    want = (f"a finite number {'above' if lo_open else 'of at least'} {lo:g}"
            + (f" and at most {hi:g}" if hi is not None else ""))
    return f"{key} = {text}: pass {want}"


# The keys LoadGen 6.0.17's TestSettings::FromConfig reads (test_settings_internal.cc): any
# scenario, or only the scenarios named. LoadGen skips every other key without a word, so a
# typo ('target_qsp', 'Sever') would silently leave the default in force: refused here instead.
SCENARIO_NAMES = ("SingleStream", "MultiStream", "Server", "Offline")
ANY_SCENARIO_KEYS = frozenset("""
    accuracy_log_probability accuracy_log_rng_seed accuracy_log_sampling_target
    accuracy_sample_count_override infer_token_latencies max_duration max_query_count min_duration
    min_query_count mode performance_issue_same performance_issue_same_index performance_issue_unique
    performance_sample_count_override print_timestamps qsl_rng_seed sample_concatenate_permutation
    sample_index_rng_seed schedule_rng_seed test05 test05_qsl_rng_seed test05_sample_index_rng_seed
    test05_schedule_rng_seed token_latency_scaling_factor use_token_latencies""".split())
SCENARIO_KEYS = {
    "target_qps": ("Server", "Offline"),
    "target_latency": ("SingleStream", "MultiStream", "Server"),
    "target_latency_percentile": ("SingleStream", "MultiStream", "Server"),
    "samples_per_query": ("MultiStream",),
    "coalesce_queries": ("Server",), "max_async_queries": ("Server",),
    "ttft_latency": ("Server",), "tpot_latency": ("Server",),
}


def unread_key(key: str) -> str | None:
    """Why LoadGen would ignore KEY ('model.scenario.name'), or None if it reads it."""
    model, scenario, name = key.rsplit(".", 2) if key.count(".") >= 2 else ("", "", key)
    if scenario != "*" and scenario not in SCENARIO_NAMES:
        return (f"{key}: unknown scenario {scenario!r} (LoadGen would ignore the line): use "
                f"{', '.join(SCENARIO_NAMES)} or *")
    if name in ANY_SCENARIO_KEYS:
        return None
    if name not in SCENARIO_KEYS:
        return f"{key}: LoadGen has no setting {name!r} and would ignore the line: check its spelling"
    if scenario != "*" and scenario not in SCENARIO_KEYS[name]:
        return (f"{key}: LoadGen reads {name} only for {', '.join(SCENARIO_KEYS[name])}, so it would "
                "ignore the line")
    return None


_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|[0-9]+)")
_FLOAT = re.compile(r"[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf(inity)?|nan)", re.I)


def parse_conf(text: str, origin: str = "user.conf") -> dict[str, str]:
    """key -> value text, read exactly as LoadGen's TestSettings::FromConfig reads a conf file.

    Its parser is whitespace-token based, which has traps: 'key=value' written without spaces is
    one token and silently ignored; '#' starts a comment only as a token of its own and only
    before the value (so a comment after a value, or '#note text', is an error); a value must be
    a whole integer or double. The last line setting a key wins. Errors are UserErrors.
    """
    kv: dict[str, str] = {}
    for n, line in enumerate(text.split("\n"), 1):
        key, looking_for = "", 0  # 0 = key, 1 = '=', 2 = value
        for tok in line.split():
            if tok == "#" and looking_for != 2:
                break
            if looking_for == 2:
                if not (_INT.fullmatch(tok) or _FLOAT.fullmatch(tok)):
                    raise UserError(f"{origin}:{n}: LoadGen needs a number after '=', got {tok!r} "
                                    "(comments go on a line of their own, after '# ')")
                kv[key] = tok
                continue
            if looking_for == 1 and tok != "=":
                raise UserError(f"{origin}:{n}: expected 'key = value' with spaces around '=', "
                                f"got {line.strip()!r}")
            if looking_for == 0:
                key = tok
            looking_for += 1
    return kv


def conf_value(kv: dict[str, str], model: str, scenario: str, key: str) -> tuple[str, str] | None:
    """(value, the key that matched) in LoadGen's order: model.scenario, *.scenario, model.*, *.*."""
    for k in (f"{model}.{scenario}.{key}", f"*.{scenario}.{key}", f"{model}.*.{key}", f"*.*.{key}"):
        if k in kv:
            return kv[k], k
    return None


def conf_has(text: str, model: str, scenario: str, key: str) -> bool:
    return conf_value(parse_conf(text), model, scenario, key) is not None


@lru_cache(maxsize=1)
def loadgen_mlperf_conf() -> str | None:
    """The mlperf.conf text compiled into the installed LoadGen, or None if it cannot be found.

    The wheel ships no mlperf.conf file: LoadGen embeds it (mlperf_conf.h) as one C string and
    parses that on the first FromConfig, so reading the string from the extension gives exactly
    the values LoadGen applies.
    """
    from importlib.util import find_spec

    try:  # found, not imported: an extension's initialisation cut short by Ctrl-C is an ImportError
        spec = find_spec("mlperf_loadgen")
        data = Path(spec.origin).read_bytes()
    except (ImportError, OSError, TypeError, AttributeError, ValueError):
        return None
    start = data.find(b"# The format of this config file is")
    if start < 0:
        return None
    return data[start:data.find(b"\0", start)].decode("utf-8", "replace")


def _strtoull(text: str) -> int:
    """C strtoull(text, NULL, 0): the leading integer (hex 0x.., octal 0.., decimal), so
    '100.5' -> 100 and '0.5' -> 0. LoadGen reads integer keys such as target_latency this way."""
    m = re.match(r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text.strip())
    if not m:
        return 0
    digits = m.group(2)
    v = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 8) if digits[0] == "0" else int(digits)
    return (-v) % (1 << 64) if m.group(1) == "-" else v


@dataclass(frozen=True)
class LatencyBound:
    ms: int  # LoadGen keeps whole milliseconds (strtoull), then multiplies by 1e6 ns
    source: str  # "user.conf" | "mlperf.conf" | "LoadGen default"
    key: str  # the key that set it


def latency_bound(conf_text: str, model: str, scenario: str,
                  mlperf_conf: str | None = None) -> LatencyBound | None:
    """The Server p99 bound LoadGen will judge the run against; None outside Server, or when
    LoadGen's mlperf.conf cannot be read and the user.conf does not set it.

    LoadGen applies mlperf.conf, then the user.conf, each file resolved on its own (most specific
    key first), and a key the user.conf has at any level replaces mlperf.conf's: so
    '*.*.target_latency = 100' in a user.conf beats mlperf.conf's 'resnet50.Server.target_latency'.
    """
    if scenario != "Server":
        return None
    try:
        hit = conf_setting(conf_text, model, "Server", "target_latency", mlperf_conf)
    except LookupError:
        return None
    if hit is not None:
        return LatencyBound(_strtoull(hit[0]), hit[1], hit[2])
    return LatencyBound(100, "LoadGen default", "server_target_latency_ns")


def conf_setting(conf_text: str, model: str, scenario: str, key: str,
                 mlperf_conf: str | None = None) -> tuple[str, str, str] | None:
    """(value, "user.conf" | "mlperf.conf", the key that matched) for KEY as LoadGen applies the
    confs: mlperf.conf, then the user.conf, each file resolved on its own (most specific key
    first), and a key the user.conf has at any level replaces mlperf.conf's. None where neither
    sets it (LoadGen's default holds); LookupError where mlperf.conf cannot be read."""
    base = loadgen_mlperf_conf() if mlperf_conf is None else mlperf_conf
    for source, text in (("user.conf", conf_text), ("mlperf.conf", base)):
        if text is None:
            raise LookupError("LoadGen's mlperf.conf cannot be read")
        hit = conf_value(parse_conf(text, source), model, scenario, key)
        if hit is not None:
            return hit[0], source, hit[1]
    return None


def conf_int(text: str) -> int:
    """An integer key's value as LoadGen reads it (strtoull)."""
    return _strtoull(text)


def latency_bound_ms(conf_text: str, model: str, scenario: str, mlperf_conf: str | None = None) -> int | None:
    b = latency_bound(conf_text, model, scenario, mlperf_conf)
    return None if b is None else b.ms


def make_user_conf(base: str, model: str, scenario: str, o: Overrides) -> str:
    lines = [base.rstrip(), "", "# ---- written by visionperf for this run ----"] if base.strip() else \
        ["# ---- written by visionperf for this run ----"]
    lines += [f"# {n}" for n in o.notes]
    key = f"{model}.{scenario}"
    if o.target_qps is not None:
        if scenario in ("Offline", "Server"):
            lines.append(f"{key}.target_qps = {o.target_qps:.6g}")
        else:  # SingleStream / MultiStream: the expected latency of one query
            per_query = 1000.0 / o.target_qps
            lines.append(f"{key}.target_latency = {per_query:.6g}")
    if o.duration_s is not None:
        lines.append(f"{key}.min_duration = {int(o.duration_s * 1000)}")
        if scenario == "Offline":
            # Offline issues max(min_query_count, 1.1 * qps * duration) samples: with the
            # official 24,576 floor a short run could not be short.
            lines.append(f"{key}.min_query_count = 1")
    if o.performance_sample_count is not None:
        lines.append(f"{key}.performance_sample_count_override = {o.performance_sample_count}")
    return "\n".join(lines) + "\n"


def test_settings(user_conf: Path, model: str, scenario: str, mode: str):
    """LoadGen's own reading of mlperf.conf + USER_CONF, through the Python wheel of the same
    release the engine links. Once per process: LoadGen reads its mlperf.conf only on the first
    FromConfig call (the engine's copy of LoadGen keeps its own count and makes its own call)."""
    import mlperf_loadgen as lg

    global _from_config_calls
    if _from_config_calls:
        raise RuntimeError("LoadGen reads its mlperf.conf only on the first FromConfig call in a "
                           "process: run each test in a fresh process")
    _from_config_calls += 1
    s = lg.TestSettings()
    if s.FromConfig(str(user_conf), model, scenario) != 0:
        raise UserError(f"LoadGen rejected {user_conf}: check its keys against mlperf.conf")
    s.scenario = getattr(lg.TestScenario, scenario)
    s.mode = lg.TestMode.AccuracyOnly if mode == "accuracy" else lg.TestMode.PerformanceOnly
    return s
