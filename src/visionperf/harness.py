"""The run path moved to visionperf.run; this shim stays only until the CLI imports it from
there and opens the cluster machine itself."""

from functools import partial

from .cluster import Cluster
from .run import RunConfig, RunReport, result_dir
from .run import run as run_on

__all__ = ["RunConfig", "RunReport", "result_dir", "run"]


def run(cfg: RunConfig, log=print, display=None) -> RunReport:
    if cfg.cluster:
        return run_on(cfg, log, display, machine=partial(Cluster.open, cfg.cluster, cfg.nodes))
    return run_on(cfg, log, display)
