"""Many nodes on Ray (`--cluster`), measured on this machine: node processes here (one local Ray
cluster of up to 4 nodes, kept for the whole benchmark), simulated cards at rates the machine can
carry, each figure beside one server with the same cards, repeated, medians.

1. Offline at 1, 2, 4 nodes x 2 cards: % of linear (N x the 1-node figure); one server with the
   same 2, 4, 8 cards beside it; the driver's and the nodes' host CPU per sample.
2. Server at 2 nodes: the highest VALID QPS (bisection), against the Offline figure of the same
   nodes (Server/Offline); and at one fixed QPS, p99 over 2 nodes against one server with the
   same cards: the latency the hop adds.
3. The hop per batch: batches of 1..512 samples sent to a node one at a time, through the
   node's stream (how the cluster forwards them) and as Ray actor calls (how it did before),
   against the node's own time on them; the smallest batch whose hop costs under 5% of the
   batch's time.
4. CPU per forwarded batch at each end, the stream against Ray's actor call: empty batches (the
   hop alone) and Server's batches of 8, one at a time (round trip) and 4 in flight (as a run
   keeps them); each process's idle CPU over the same time taken out.
5. Ray's compiled graphs against its actor calls: round trip and CPU per call at each end, and
   the CPU the actor burns while its graph waits (why the cluster did not forward by graphs).

    python benchmarks/cluster_scaling.py [--repeats 3] [--duration 5] [--card-rate 1000]
        [--server-card-rate 2000] [--skip offline,server,hop,cpu,graph]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def sh(*args, check=True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "visionperf", *map(str, args)], capture_output=True, text=True, check=False)
    if check and p.returncode != 0:
        raise SystemExit(f"visionperf {' '.join(map(str, args))} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p


def fixture(tmp: Path) -> dict:
    """A synthetic ImageNet, a thin ResNet50 quantised to int8 (uint8 rows: the cards copy 150 KB a
    sample, not 600), its cache built once."""
    sh("sample-data", "imagenet", "--out", tmp / "imagenet", "--count", "256")
    sh("build-model", "resnet50", "--out", tmp / "r50.onnx", "--width", "0.125")
    sh("quantize", "resnet50", "--model", tmp / "r50.onnx", "--dataset", tmp / "imagenet", "--calibration-count", "16",
       "--out", tmp / "r50_int8.onnx")
    sh("preprocess", "resnet50", "--dataset", tmp / "imagenet", "--out", tmp / "cache", "--model", tmp / "r50_int8.onnx")
    return {"model": tmp / "r50_int8.onnx", "dataset": tmp / "imagenet", "cache": tmp / "cache"}


def run(fx: dict, out: Path, scenario: str, devices: int, card_rate: float, duration: float,
        cluster: str | None = None, nodes: int | None = None, qps: float | None = None) -> dict:
    """One `visionperf run`; its run.json (with LoadGen's result)."""
    args = ["run", "resnet50", "--scenario", scenario, "--backend", "simulated", "--devices", devices,
            "--card-rate", card_rate, "--duration", duration, "--model", fx["model"], "--dataset", fx["dataset"],
            "--cache", fx["cache"], "--out", out, "--quiet"]
    if cluster:
        args += ["--cluster", cluster, "--nodes", nodes]
    if qps:
        args += ["--target-qps", f"{qps:.1f}"]
    sh(*args)
    return json.loads((out / "resnet50" / scenario / "performance/run_1/run.json").read_text())


def node_cpu(rec: dict) -> float | None:
    cpus = [n["host_cpu_us_per_sample"] for n in rec.get("cluster", {}).get("nodes", []) if n.get("host_cpu_us_per_sample")]
    return statistics.mean(cpus) if cpus else None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def offline(fx, tmp, address, a) -> None:
    print(f"\n== Offline: N nodes x 2 cards at {a.card_rate:g}/s each, beside one server with the same cards "
          f"({a.repeats} repeats, {a.duration:g} s runs, medians)")
    rows = {}
    for k in (1, 2, 4):
        c, s, dcpu, ncpu = [], [], [], []
        for r in range(a.repeats):  # interleaved: both sides see the same machine
            rc = run(fx, tmp / f"off-n{k}-{r}", "Offline", 2, a.card_rate, a.duration, address, k)
            rs = run(fx, tmp / f"off-s{k}-{r}", "Offline", 2 * k, a.card_rate, a.duration)
            assert rc["result"]["valid"] and rs["result"]["valid"]
            c.append(rc["result"]["value"])
            s.append(rs["result"]["value"])
            dcpu.append(rc["host_cpu_us_per_sample"])
            ncpu.append(node_cpu(rc))
        rows[k] = (med(c), med(s), med(dcpu), med(ncpu), c)
    base = rows[1][0]
    print(f"{'nodes':>5} {'cards':>5} {'cluster/s':>10} {'% linear':>9} {'one server/s':>12} {'cluster/server':>14} "
          f"{'driver us/smp':>13} {'node us/smp':>11}  runs")
    for k, (c, s, dcpu, ncpu, allc) in rows.items():
        print(f"{k:5d} {2 * k:5d} {c:10,.0f} {100 * c / (k * base):8.1f}% {s:12,.0f} {100 * c / s:13.1f}% "
              f"{dcpu:13.1f} {ncpu:11.1f}  {', '.join(f'{x:,.0f}' for x in allc)}")


def bisect_servers(fx, tmp, a, sides: list[dict]) -> list[float]:
    """The highest VALID Server QPS of each side, between half and all of its Offline figure
    (A.steps steps, the sides' runs interleaved so that both see the same machine); 0 if none.
    A side: {label, off, cluster, cards, rate}."""
    bounds = [[0.5 * sd["off"], 1.0 * sd["off"], 0.0] for sd in sides]
    for _ in range(a.steps):
        for sd, b in zip(sides, bounds):
            mid = (b[0] + b[1]) / 2
            rec = run(fx, tmp / f"bisect-{sd['label']}", "Server", sd["cards"], sd["rate"], a.duration, sd["cluster"],
                      2 if sd["cluster"] else None, mid)
            ok = rec["result"]["valid"]
            p99 = rec["result"]["latency_ns"].get("99.00", 0) / 1e6
            print(f"  {sd['label']}: Server {mid:8,.0f} QPS: {'VALID' if ok else 'INVALID'}, p99 {p99:.2f} ms, driver "
                  f"{rec['host_cpu_us_per_sample']:.1f} us/sample")
            if ok:
                b[0], b[2] = mid, mid
            else:
                b[1] = mid
    return [b[2] for b in bounds]


def server(fx, tmp, address, a) -> None:
    rate, cards = a.server_card_rate, a.server_cards
    print(f"\n== Server at 2 nodes x {cards} card(s) at {rate:g}/s each, beside one server with the same "
          f"{2 * cards} cards (resnet50, p99 bound 15 ms)")
    offs = [run(fx, tmp / f"srv-off-{r}", "Offline", cards, rate, a.duration, address, 2)["result"]["value"]
            for r in range(a.repeats)]
    offs1 = [run(fx, tmp / f"srv-off1-{r}", "Offline", 2 * cards, rate, a.duration)["result"]["value"]
             for r in range(a.repeats)]
    off, off1 = med(offs), med(offs1)
    best, best1 = bisect_servers(fx, tmp, a, [
        {"label": "2 nodes", "off": off, "cluster": address, "cards": cards, "rate": rate},
        {"label": "one server", "off": off1, "cluster": None, "cards": 2 * cards, "rate": rate}])
    print(f"2 nodes: Offline {off:,.0f}/s (runs {', '.join(f'{x:,.0f}' for x in offs)}), highest VALID Server "
          f"{best:,.0f} QPS: Server/Offline {100 * best / off:.1f}%")
    print(f"one server: Offline {off1:,.0f}/s (runs {', '.join(f'{x:,.0f}' for x in offs1)}), highest VALID Server "
          f"{best1:,.0f} QPS: Server/Offline {100 * best1 / off1:.1f}%")
    qps = a.fixed_qps_share * off
    c99, s99 = [], []
    for r in range(a.repeats):
        rc = run(fx, tmp / f"srv-c-{r}", "Server", cards, rate, a.duration, address, 2, qps)
        rs = run(fx, tmp / f"srv-s-{r}", "Server", 2 * cards, rate, a.duration, qps=qps)
        c99.append(rc["result"]["latency_ns"]["99.00"] / 1e6)
        s99.append(rs["result"]["latency_ns"]["99.00"] / 1e6)
    print(f"at {qps:,.0f} QPS ({a.fixed_qps_share:.0%} of Offline): p99 over 2 nodes {med(c99):.2f} ms, one server with "
          f"the same {2 * cards} cards {med(s99):.2f} ms: the hop adds {med(c99) - med(s99):.2f} ms "
          f"(runs {', '.join(f'{x:.2f}' for x in c99)} vs {', '.join(f'{x:.2f}' for x in s99)})")


@contextmanager
def one_node(fx, a, devices: int = 2, card_rate: float | None = None):
    """A local:1 cluster with its node's engine built and every sample loaded: (cluster, its
    RemoteNode on the stream, the node's actor, the cache's row count)."""
    from visionperf.cache import open_cache
    from visionperf.cluster import Cluster
    from visionperf.datasets import open_dataset
    from visionperf.run import RunConfig

    cfg = RunConfig("resnet50", "Server", model=str(fx["model"]), dataset=str(fx["dataset"]), backend="simulated",
                    devices=devices, card_rate=card_rate or a.card_rate, cache=str(fx["cache"]))
    spec = cfg.validate()
    with Cluster.open("local:1", None, log=lambda m: None) as c:
        cache = c.prepare_cache(spec, open_dataset(spec.workload, cfg.dataset), log=lambda m: None)
        c.build(spec, cache, [], log=lambda m: None)
        n = len(open_cache(Path(cfg.cache)).data)
        c.load(np.arange(n))
        yield c, c.devices[0], c.nodes[0].actor, n


def hop(fx, a) -> None:
    """Batches sent to one node one at a time: round trip through the stream and as an actor
    call, against the node's own time on them."""
    import ray

    print(f"\n== The hop per batch: one node, 2 cards at {a.card_rate:g}/s, one batch at a time "
          f"({a.calls} calls per size and path, medians)")
    with one_node(fx, a) as (c, dev, actor, n):
        empty_ray, empty_stream = [], []
        for _ in range(200):
            t0 = time.perf_counter()
            ray.get(actor.ping.remote())
            empty_ray.append(time.perf_counter() - t0)
        nothing = np.zeros(0, np.int64)
        for _ in range(200):  # an empty batch: the node's serve returns at once
            t0 = time.perf_counter()
            dev.collect(dev.submit(None, nothing), None)
            empty_stream.append(time.perf_counter() - t0)
        print(f"empty batch there and back: stream {1e3 * statistics.median(empty_stream):.3f} ms, Ray actor call "
              f"{1e3 * statistics.median(empty_ray):.3f} ms")
        print(f"{'batch':>6} {'stream ms':>10} {'actor ms':>9} {'node ms':>8} {'stream hop':>11} {'share':>6} "
              f"{'actor hop':>10} {'share':>6}")
        rng = np.random.default_rng(0)
        first = None
        for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512):
            trips, atrips, nodes = [], [], []
            for _ in range(a.calls):
                idx = rng.integers(0, n, b).astype(np.int64)
                s0 = ray.get(actor.stats.remote())["serve_s"]
                t0 = time.perf_counter()
                dev.collect(dev.submit(None, idx), None)
                trips.append(time.perf_counter() - t0)
                nodes.append(ray.get(actor.stats.remote())["serve_s"] - s0)
                t0 = time.perf_counter()
                ray.get(actor.run.remote(idx.tobytes()))
                atrips.append(time.perf_counter() - t0)
            trip, atrip, node = statistics.median(trips), statistics.median(atrips), statistics.median(nodes)
            share, ashare = (trip - node) / trip, (atrip - node) / atrip
            first = first or (b if share < 0.05 else None)
            print(f"{b:6d} {1e3 * trip:10.3f} {1e3 * atrip:9.3f} {1e3 * node:8.3f} {1e3 * (trip - node):11.3f} "
                  f"{100 * share:5.1f}% {1e3 * (atrip - node):10.3f} {100 * ashare:5.1f}%")
        print(f"through the stream the hop costs under 5% of the batch's time from a batch of {first} samples"
              if first else "the hop never fell under 5% of the batch's time")


def cpu_s() -> float:
    return time.process_time()  # this process's user + system CPU, to the ns


def cpu_per_batch(fx, a) -> None:
    """CPU per forwarded batch at each end, the stream against the actor call."""
    import ray

    calls = a.calls * 40
    print(f"\n== CPU per forwarded batch at each end: one node (1 card at 1,000,000/s: its engine's own work "
          f"is small), {calls} batches per row, each process's idle CPU taken out, medians of {a.repeats}")
    with one_node(fx, a, devices=1, card_rate=1e6) as (c, dev, actor, n):
        def node_cpu() -> float:
            return ray.get(actor.stats.remote())["cpu_s"]

        def idle_rates(seconds=2.0):
            d0, n0 = cpu_s(), node_cpu()
            time.sleep(seconds)
            return (cpu_s() - d0) / seconds, (node_cpu() - n0) / seconds

        def stream_batches(idx, depth):
            held = deque()
            for _ in range(calls):
                if len(held) == depth:
                    dev.collect(held.popleft(), None)
                held.append(dev.submit(None, idx))
            while held:
                dev.collect(held.popleft(), None)

        def actor_batches(idx, depth):
            body = idx.tobytes()
            held = deque()
            for _ in range(calls):
                if len(held) == depth:
                    ray.get(held.popleft())
                held.append(actor.run.remote(body))
            while held:
                ray.get(held.popleft())

        d_idle, n_idle = idle_rates()
        print(f"idle: driver {100 * d_idle:.1f}% of a core, node {100 * n_idle:.1f}%")
        print(f"{'path':>10} {'batch':>5} {'in flight':>9} {'driver CPU us':>13} {'node CPU us':>11} {'us/batch':>9}")
        for size in (0, 8):
            idx = np.arange(size, dtype=np.int64) % n
            for depth in (1, 4):
                for how, fn in (("stream", stream_batches), ("actor call", actor_batches)):
                    fn(idx, depth)  # warm
                    dc, nc, wall = [], [], []
                    for _ in range(a.repeats):
                        d0, n0, t0 = cpu_s(), node_cpu(), time.perf_counter()
                        fn(idx, depth)
                        t = time.perf_counter() - t0
                        dc.append((cpu_s() - d0 - d_idle * t) / calls)
                        nc.append((node_cpu() - n0 - n_idle * t) / calls)
                        wall.append(t / calls)
                    print(f"{how:>10} {size:5d} {depth:9d} {1e6 * med(dc):13.1f} {1e6 * med(nc):11.1f} "
                          f"{1e6 * med(wall):9.1f}")


def compiled_graph(a) -> None:
    """Ray's compiled graphs (a channel kept open to the actor) against its actor calls, on an
    actor that does nothing: the round trip, and the CPU each end spends per call; then what
    the actor burns while its graph waits for work (its reader spins)."""
    import ray
    from ray.dag import InputNode

    class Echo:
        def run(self, b: bytes) -> bytes:
            return b

        def cpu(self) -> float:
            return cpu_s()

    print(f"\n== Ray's compiled graphs against its actor calls (an actor that does nothing, {a.calls * 20} calls, "
          "one at a time)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        echo = ray.remote(num_cpus=0, max_concurrency=4)(Echo)
        payload = np.arange(64, dtype=np.int64).tobytes()
        rows = []
        for how in ("actor call", "compiled graph"):
            actor = echo.remote()
            if how == "compiled graph":
                with InputNode() as inp:
                    dag = actor.run.bind(inp).experimental_compile()
                send = dag.execute
            else:
                send = actor.run.remote
            for _ in range(50):
                ray.get(send(payload))
            n = a.calls * 20
            c0, n0, t0 = cpu_s(), ray.get(actor.cpu.remote()), time.perf_counter()
            for _ in range(n):
                ray.get(send(payload))
            t1, c1, n1 = time.perf_counter(), cpu_s(), ray.get(actor.cpu.remote())
            idle = None
            if how == "compiled graph":
                i0 = ray.get(actor.cpu.remote())
                time.sleep(2.0)
                idle = (ray.get(actor.cpu.remote()) - i0) / 2.0
                dag.teardown()
            rows.append((how, (t1 - t0) / n, (c1 - c0) / n, (n1 - n0) / n, idle))
            ray.kill(actor)
        print(f"{'hop':>15} {'round trip us':>14} {'driver CPU us':>14} {'actor CPU us':>13} {'actor idle':>14}")
        for how, trip, dcpu, acpu, idle in rows:
            print(f"{how:>15} {1e6 * trip:14.0f} {1e6 * dcpu:14.0f} {1e6 * acpu:13.0f} "
                  + (f"{100 * idle:12.0f}% of a core" if idle is not None else f"{'':>14}"))
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--card-rate", type=float, default=1000.0, help="Offline and the hop: samples/s per card")
    ap.add_argument("--server-card-rate", type=float, default=2000.0, help="Server: samples/s per card (batch 8 "
                    "takes 4 ms at 2000/s: room in the 15 ms bound)")
    ap.add_argument("--server-cards", type=int, default=1, help="Server: cards per node")
    ap.add_argument("--steps", type=int, default=5, help="Server bisection steps")
    ap.add_argument("--fixed-qps-share", type=float, default=0.6, help="Server p99 comparison at this share of Offline")
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--skip", default="", help="comma-separated: offline, server, hop, cpu, graph")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    from visionperf.cluster.local import LocalCluster

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        fx = fixture(tmp)
        if {"offline", "server"} - skip:
            local = LocalCluster(4, log=print)  # one cluster for every run: --nodes K takes the first K
            try:
                if "offline" not in skip:
                    offline(fx, tmp, local.address, a)
                if "server" not in skip:
                    server(fx, tmp, local.address, a)
            finally:
                local.shutdown()
        if "hop" not in skip:
            hop(fx, a)
        if "cpu" not in skip:
            cpu_per_batch(fx, a)
        if "graph" not in skip:
            compiled_graph(a)


if __name__ == "__main__":
    main()
