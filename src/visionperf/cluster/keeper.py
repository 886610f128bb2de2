"""local:N's keeper: the N node processes of a local cluster, held by a process of their own that
takes them all down with it, and goes with the head that started it, however that ends.

Ray's reaper ends a killed driver's raylets and GCS, but their agents (dashboard, runtime env)
then wait a minute on the GCS that is gone before they exit. The keeper is the nodes' subreaper:
every process they leave behind becomes its child, and it kills them all when it goes, which is
when the head closes its stdin (the run ended) or dies (PR_SET_PDEATHSIG). It runs in a session
of its own, so a Ctrl-C at the terminal reaches the head, which then closes it in order.

    python -m visionperf.cluster.keeper N HEAD_PID   ->  prints {"address": ...}, then waits
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from contextlib import suppress
from pathlib import Path

from ..errors import STOP_SIGNALS

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
OBJECT_STORE = 96 * 2**20  # each node's Ray object store: answers are small


def main(argv: list[str]) -> int:
    from ..children import _PRCTL, die_with

    n, head = int(argv[0]), int(argv[1])
    die_with(head, signal.SIGTERM)
    if _PRCTL is not None:
        _PRCTL(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for stop in STOP_SIGNALS:  # a closed terminal stops the nodes as SIGTERM does
        signal.signal(stop, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the head decides when the nodes go
    cluster = None
    try:
        cluster = start(n)
        print(json.dumps({"address": cluster.address}), flush=True)
        sys.stdin.read()  # until the head closes it, or dies
    finally:
        if cluster is not None:
            with suppress(Exception):
                cluster.shutdown()
        kill_descendants()
    return 0


def start(n: int):
    """N Ray nodes here, each marked for visionperf; the first is the head, as on a real cluster.

    Each node gets CPUs of its own, as far as the machine has them (node_cpus): its processes
    inherit the affinity they were started with, so each node plans its devices on its own
    cores, as separate machines would, instead of every node pinning its threads to the same
    first cores."""
    from ray.cluster_utils import Cluster

    from .connect import NODE_RESOURCE

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    mine = sorted(os.sched_getaffinity(0))
    c = None
    try:
        for k in range(n):
            # the mark's amount orders the nodes (session.py): node0 is the first started
            node = {"num_cpus": 1, "resources": {NODE_RESOURCE: k + 1}, "object_store_memory": OBJECT_STORE}
            os.sched_setaffinity(0, node_cpus(mine, n, k))
            if c is None:
                c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
            else:
                c.add_node(**node)
        os.sched_setaffinity(0, mine)
        c.wait_for_nodes()
    except BaseException:
        if c is not None:
            with suppress(Exception):
                c.shutdown()
        raise
    return c


def node_cpus(cpus: list[int], n: int, k: int) -> list[int]:
    """Node K of N's CPUs: contiguous equal shares of CPUS while there are enough, else one each
    in turn (nodes then share)."""
    if n <= len(cpus):
        base, extra = divmod(len(cpus), n)
        start = k * base + min(k, extra)
        return cpus[start : start + base + (1 if k < extra else 0)]
    return [cpus[k % len(cpus)]]


def kill_descendants(grace_s: float = 2.0) -> None:
    """Every process left under this one (orphans come here: it is their subreaper), killed and
    reaped, until none is left or GRACE_S has passed."""
    me = os.getpid()
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        kids = _children(me)
        if not kids:
            return
        for pid in kids:
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in kids:
            with suppress(OSError):
                os.waitpid(pid, 0)


def _children(parent: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == parent and fields[0] != "Z":
            out.append(int(d))
        elif len(fields) > 1 and int(fields[1]) == parent:
            with suppress(OSError):
                os.waitpid(int(d), os.WNOHANG)  # a zombie: reap it
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
