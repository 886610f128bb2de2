"""Where a run's results go: `OUT/<benchmark>/<Scenario>/performance/run_1/` or `.../accuracy/`
(`.../TEST01/performance/run_1/` for an audit).

The scenario directory is locked for the whole run, so a second run into it is refused, not
clobbered. Logs are written to a partial directory that is renamed into place only when the
run finished cleanly, so a crashed run never leaves a result that looks complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..atomic import replace_dir
from ..errors import UserError
from ..locks import Busy, DirLock
from .config import RunSpec


def result_dir(out: str | Path, workload: str, scenario: str, mode: str, compliance: str | None = None) -> Path:
    base = Path(out) / workload / scenario
    if compliance:
        return base / compliance / "performance" / "run_1"
    return base / "accuracy" if mode == "accuracy" else base / "performance" / "run_1"


def final_dir(spec: RunSpec) -> Path:
    cfg = spec.config
    return result_dir(cfg.out, spec.workload.name, spec.scenario, cfg.mode, cfg.compliance)


def partial_dir(spec: RunSpec) -> Path:
    """Where this process writes a run's logs until it finished (renamed into place then)."""
    final = final_dir(spec)
    return final.with_name(final.name + f".partial-{os.getpid()}")


@contextmanager
def results_claimed(spec: RunSpec) -> Iterator[None]:
    """The scenario directory locked while the run lasts; its partial directory removed if the run fails."""
    lock = _lock_results(spec)
    try:
        yield
    except BaseException:
        shutil.rmtree(partial_dir(spec), ignore_errors=True)
        raise
    finally:
        lock.release()


def _lock_results(spec: RunSpec) -> DirLock:
    scenario_dir = Path(spec.config.out) / spec.workload.name / spec.scenario
    try:
        lock = DirLock(scenario_dir, busy="{dir} is in use by another visionperf run (pid {pid}: {cmd}): "
                                          "wait for it to finish, or pass another --out").acquire(spec.config.wait)
    except Busy:
        raise
    except OSError as e:
        raise UserError(f"cannot write the results in {scenario_dir}: {e.strerror}: choose a location "
                        "you can write (another --out)") from None
    _remove_dead_partials(scenario_dir)
    return lock


def _remove_dead_partials(scenario_dir: Path) -> None:
    """A run killed outright (SIGKILL, power loss) leaves its `run_1.partial-PID`; every run into
    SCENARIO_DIR holds its lock, so with the lock held, any partial directory there is dead."""
    # performance/run_1.partial-PID, accuracy.partial-PID, TEST01/..., and a replaced run's
    # .run_1.old-PID whose deletion was cut short
    for d in [*scenario_dir.glob("**/*.partial-*"), *scenario_dir.glob("**/.*.old-*")]:
        if d.is_dir() and d.name.rsplit("-", 1)[-1] != str(os.getpid()):
            shutil.rmtree(d, ignore_errors=True)


def fresh_partial(spec: RunSpec) -> Path:
    """An empty partial directory, holding the audit.config of a --compliance run."""
    partial = partial_dir(spec)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    if spec.audit:
        (partial / "audit.config").write_text(spec.audit)
    return partial


def publish(partial: Path, final: Path, log) -> None:
    """PARTIAL renamed into place as FINAL, replacing an earlier result there."""
    if final.exists():
        log(f"replacing the previous results in {final}")
    replace_dir(partial, final)
