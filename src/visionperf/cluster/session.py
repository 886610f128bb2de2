"""A run's cluster as its machine: joined (connect.py) or started here (local.py), one NodeServer
per node checked against this head, the nodes' caches, their engines and the head's over them,
LoadGen's loads forwarded, and run.json's per-node record."""

from __future__ import annotations

import dataclasses
import os
import platform
import signal
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__, _engine
from ..cache import Cache, expected_manifest
from ..errors import STOP_SIGNALS, UserError
from ..placement import Partition
from ..preprocess import ensure_cache
from ..run import Built, RunSpec
from ..run.cpu import host_cpu
from ..sut import EngineError, SystemUnderTest
from .connect import NAMESPACE, NODE_RESOURCE, Address, import_ray, join, parse_address, reachable
from .local import LocalCluster
from .node import NodeServer, preprocess_on_node
from .remote import CALL_TIMEOUT_S, RemoteNode, RemotePost, call, forward_plan
from .stream import PORTS_ENV, HeadStream, port_range

SETUP_TIMEOUT_S = 180.0  # a node's actor starting, opening its cache, building its engine
LOAD_TIMEOUT_S = 60.0  # a node loading LoadGen's sample set (plus a second per 2,000 samples)
PINGS = 15  # round trips timed per node at the start, through its stream
STREAM_TIMEOUT_S = 10.0  # a node's stream answering its first ping
WAIT_SLICE_S = 0.0005  # how long collect waits for an answer due now (one driver thread serves every node)
MAX_CONCURRENCY = 16  # a node's actor threads: its small calls (watch, stats, loads) beside one another
MAX_CREDITS = 28  # batches a node holds at once, at most (each takes a worker thread of its stream)


@dataclass
class NodeInfo:
    node_id: str
    ip: str
    name: str  # node<k>@<ip>, as errors and run.json name it
    actor: object = None
    described: dict = field(default_factory=dict)
    built: dict = field(default_factory=dict)
    cache_path: str = ""
    round_trip_s: float = 0.0
    forward_batch: int = 0
    credits: int = 0
    stream: str = ""  # its stream's address for batches


class Cluster:
    """A run's nodes: connected (or started, local:N), one NodeServer each, checked alike."""

    def __init__(self, ray, address: Address, nodes: list[NodeInfo], local_cluster=None):
        self.ray, self.address, self.nodes = ray, address, nodes
        self._local = local_cluster
        self.round_trip_s = 0.0
        self.scenario = ""
        self.devices: list[RemoteNode] = []
        self._streams: list[HeadStream] = []
        self._seq = 0  # loads and unloads sent, in order (NodeServer.load)

    # -- connecting ---------------------------------------------------------------------------
    @classmethod
    @contextmanager
    def open(cls, address_text: str, count: int | None = None, log=print):
        """The cluster for one command, closed on the way out however it ends."""
        c = cls.connect(address_text, count, log)
        try:
            yield c
        finally:
            c.close()

    @classmethod
    def connect(cls, address_text: str, count: int | None = None, log=print) -> Cluster:
        address = parse_address(address_text)
        port_range()  # VISIONPERF_STREAM_PORTS: a range, or refused before anything starts
        ray = import_ray()
        handlers = {s: signal.getsignal(s) for s in (*STOP_SIGNALS, signal.SIGINT)}
        local = None
        try:
            if address.is_local:
                local = LocalCluster(address.local_nodes, log)
                target = local.address
            else:
                target = reachable(address.text)
            join(ray, target, address)
        except BaseException:
            if local is not None:
                _quietly(local.shutdown)
            raise
        finally:
            # Ray sets its own handlers; visionperf's (one line, exit 143 or 129, cleanup) stay
            for s, h in handlers.items():
                if h is not None:
                    signal.signal(s, h)
        c = cls(ray, address, [], local)
        try:
            c.nodes = c._choose_nodes(count)
            c._start_servers(log)
        except BaseException:
            c.close()
            raise
        return c

    def _choose_nodes(self, count: int | None) -> list[NodeInfo]:
        alive = [n for n in self.ray.nodes() if n.get("Alive")]
        marked = [n for n in alive if n.get("Resources", {}).get(NODE_RESOURCE)]
        # in the order of the mark's amount (1, 2, ...: local:N marks them so), then address
        chosen = sorted(marked or alive, key=lambda n: (n.get("Resources", {}).get(NODE_RESOURCE, 0),
                                                        n.get("NodeManagerAddress", ""), n["NodeID"]))
        if not chosen:
            raise UserError(f"--cluster {self.address.text}: the cluster has no live nodes")
        if count is not None:
            if count > len(chosen):
                raise UserError(f"--nodes {count}: the cluster {self.address.text} has {len(chosen)} node(s)"
                                + (f" marked {NODE_RESOURCE}" if marked else "") + f": pass --nodes {len(chosen)} "
                                "or fewer")
            chosen = chosen[:count]
        return [NodeInfo(n["NodeID"], n.get("NodeManagerAddress", "?"), f"node{k}@{n.get('NodeManagerAddress', '?')}")
                for k, n in enumerate(chosen)]

    def _start_servers(self, log) -> None:
        """One NodeServer per node, pinned there, and every node checked against this head."""
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        server = ray.remote(NodeServer)
        for n in self.nodes:
            n.actor = server.options(
                name=f"visionperf-{os.getpid()}-{n.name.split('@')[0]}", namespace=NAMESPACE, num_cpus=0,
                max_concurrency=MAX_CONCURRENCY, max_restarts=0,
                enable_task_events=False,  # Ray's task events feed its dashboard; each costs CPU per batch
                scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False),
            ).remote(n.name)
        described = self._all("describe", (), SETUP_TIMEOUT_S, "starting visionperf there", setup=True)
        mine = {"visionperf": __version__, "python": platform.python_version(), "ray": ray.__version__,
                "engine_abi": int(_engine.DEVICE_ABI_VERSION)}
        for n, d in zip(self.nodes, described):
            n.described = d
            for key, value in mine.items():
                if d.get(key) != value:
                    raise UserError(f"{n.name} runs {key} {d.get(key)}, this driver {value}: install the same "
                                    f"visionperf, Python and Ray on the driver and every node")
        log(f"cluster {self.address.text}: {len(self.nodes)} node(s): "
            + ", ".join(f"{n.name} ({n.described['hostname']}, {n.described['cpus']} CPUs)" for n in self.nodes))

    def _all(self, method: str, args: tuple, timeout_s: float, what: str, setup: bool = False) -> list:
        """METHOD(*ARGS) on every node at once; the first node to fail or not answer is named."""
        refs = [getattr(n.actor, method).remote(*args) for n in self.nodes]
        out = []
        deadline = time.monotonic() + timeout_s
        for n, ref in zip(self.nodes, refs):
            try:
                out.append(call(self.ray, ref, n.name, max(0.1, deadline - time.monotonic()), what))
            except UserError as e:
                if setup and "ModuleNotFoundError" in str(e):
                    raise UserError(f"{n.name} cannot import visionperf ({e}): install visionperf with its "
                                    "cluster extra (pip install 'visionperf[cluster]') on every node") from None
                raise
        return out

    # -- the run -------------------------------------------------------------------------------
    def prepare_cache(self, spec: RunSpec, dataset, log=print) -> Cache:
        """The run's cache as every node holds it: found by each node where a single-node run
        would look (--cache, or the per-user cache root), checked against this run's manifest
        and against one another. The head gets its row count and skipped images only, and one
        byte per row for its engine, which gathers nothing."""
        cfg, w, model = spec.config, spec.workload, spec.model
        wanted = expected_manifest(w, dataset, model.input_dtype, w.layout, model.quantization)
        if self.address.is_local:  # the nodes share this disk: build it once here, as a run does
            ensure_cache(w, dataset, cfg.cache, dtype=model.input_dtype, layout=w.layout,
                         quantization=model.quantization, log=log, lock_wait=cfg.wait)
        refs = [n.actor.open_cache.remote(_absolute(cfg.cache), wanted) for n in self.nodes]
        found = []
        for n, ref in zip(self.nodes, refs):
            try:
                found.append(call(self.ray, ref, n.name, SETUP_TIMEOUT_S, "opening its cache"))
            except UserError as e:
                if "MissingCache" in str(e):
                    path = str(e).split("MissingCache: ", 1)[-1]
                    raise UserError(
                        f"{n.name} has no cache for this run at {path}: build it on every node with `visionperf "
                        f"preprocess {w.name} --dataset {cfg.dataset} --out {path} --cluster {self.address.text}"
                        + (f" --model {cfg.model}" if model.quantization else "")
                        + "`, or put it on storage every node shares") from None
                raise
        first = found[0]
        for n, f in zip(self.nodes, found):
            n.cache_path = f["path"]
            if f["identity"] != first["identity"]:
                what = [k for k in first["identity"] if first["identity"][k] != f["identity"].get(k)]
                raise UserError(f"{n.name}'s cache {f['path']} differs from {self.nodes[0].name}'s "
                                f"{first['path']} ({', '.join(what)}): every node must hold the same samples; "
                                f"rebuild it there with `visionperf preprocess ... --cluster {self.address.text}` "
                                "or share one cache")
        m = first["manifest"]
        skipped = {int(b[0]) for b in m.get("skipped", [])}
        keep = np.array([i for i in range(m["count"]) if i not in skipped], np.intp)
        log(f"cache: every node holds the same {first['rows']} rows ({m['dtype']} {m['layout']}, fingerprint "
            f"{str(m.get('data_fingerprint'))[:12]}), {self.nodes[0].name} at {first['path']}")
        return Cache(Path(first["path"]), m, np.zeros((first["rows"], 1), np.uint8), keep)

    def build(self, spec: RunSpec, cache: Cache, notes: list[str], log=print) -> Built:
        """Every node's engine (run.build_engine there), and the head's over them."""
        cfg, scenario = spec.config, spec.scenario
        self.scenario = scenario
        node_cfg = dataclasses.replace(cfg, cluster=None, nodes=None, model=_absolute(cfg.model),
                                       dataset=_absolute(cfg.dataset), cache=_absolute(cfg.cache),
                                       user_conf=None)  # LoadGen's settings are the head's alone
        built = self._all("build", (node_cfg,), SETUP_TIMEOUT_S, "building its engine")
        sizes = {b["max_response_bytes"] for b in built}
        if len(sizes) != 1:
            raise UserError(f"the nodes answer responses of different sizes ({sorted(sizes)} bytes): run one "
                            "visionperf and one model everywhere")
        max_bytes = sizes.pop()
        for n, b in zip(self.nodes, built):
            n.built = b
            log(f"{n.name} " + "\n".join(b["log"]))
            notes.extend(x for x in b["notes"] if x not in notes)
        self._open_streams()
        # Every node on one engine driver thread (the engine gives devices pinned to one CPU one driver):
        # one queue of work, and whichever node has room takes the next batch from it, in every
        # scenario (Server's samples would otherwise be dealt to the nodes in turn, fast or slow).
        cpu = (max(os.sched_getaffinity(0)),)
        devices = []
        for n, stream in zip(self.nodes, self._streams):
            n.forward_batch, n.credits = forward_plan(scenario, n.built["devices"], n.round_trip_s)
            n.credits = min(n.credits, MAX_CREDITS)
            peaks = [d.get("peak_rate") for d in n.built["devices"]]
            devices.append(RemoteNode(n.name, n.actor, stream, n.forward_batch, n.credits, 8 + max_bytes,
                                      n.round_trip_s, float(sum(peaks)) if all(peaks) else None, WAIT_SLICE_S, cpu))
            self.devices.append(devices[-1])
        log("forwarding: " + "; ".join(f"{n.name} batches of {n.forward_batch}, {n.credits} in flight, round trip "
                                        f"{n.round_trip_s * 1e3:.2f} ms" for n in self.nodes)
            + f" (streams at {', '.join(s.addresses[0] for s in self._streams)})")
        batch = max(d.batch_size for d in devices)
        try:
            sut = HeadSUT(devices, cache.data, [()], [0] * len(devices), RemotePost(max_bytes), spec.workload, batch)
        except EngineError as e:
            raise UserError(str(e)) from None
        sut.set_load_hook(self.load)
        plan = [Partition(**p) for n in self.nodes for p in n.built["plan"]]
        return Built(plan, devices, batch, sut)

    def where(self, spec: RunSpec, built: Built) -> str:
        return (f"{len(built.devices)} node(s) x {spec.config.devices} {spec.config.backend} device(s), "
                "forwarded in batches of")

    def _open_streams(self) -> None:
        """Each node's stream for the batches, opened there (bound on its address, at ports of
        VISIONPERF_STREAM_PORTS), joined here, and its round trip timed through it (the median
        of PINGS); a node whose stream does not answer is one line."""
        ports = os.environ.get(PORTS_ENV, "")  # checked when the session began (port_range)
        addresses = self._all("open_stream", (ports or None,), SETUP_TIMEOUT_S, "opening its stream")
        for n, a in zip(self.nodes, addresses):
            self._streams.append(HeadStream(n.name, a))
            n.stream = a[0]
        for n, stream in zip(self.nodes, self._streams):
            n.round_trip_s = stream.round_trip(PINGS, STREAM_TIMEOUT_S)
        self.round_trip_s = max(n.round_trip_s for n in self.nodes)

    def load(self, indices) -> None:
        """The engine's load hook: LoadGen's sample set to every node at once, waited for (its
        queries come next); None: unload, not waited for (it only frees memory, and a node that
        stopped answering must not hold up the end of the test)."""
        self._seq += 1
        if indices is None:
            for n in self.nodes:
                n.actor.unload.remote(self._seq)
            return
        idx = np.asarray(indices, np.int64)
        self._all("load", (idx, self._seq), LOAD_TIMEOUT_S + len(idx) / 2000, f"loading {len(idx)} samples")

    def record(self, run_s: float) -> dict:
        """run.json's `cluster`: each node's samples, throughput and host CPU during the test."""
        return {"cluster": self._node_record(run_s)}

    def describe(self, record: dict) -> list[str]:
        return describe_nodes(record["cluster"])

    def _node_record(self, run_s: float) -> dict:
        stats = []
        for n in self.nodes:
            try:
                stats.append(call(self.ray, n.actor.stats.remote(), n.name, CALL_TIMEOUT_S, "reporting"))
            except UserError as e:
                stats.append({"unreachable": str(e)})
        nodes = []
        for n, s in zip(self.nodes, stats):
            entry = {"name": n.name, "ip": n.ip, "hostname": n.described.get("hostname"),
                     "devices": len(n.built.get("devices", [])), "plan": n.built.get("plan", []),
                     "cache": n.cache_path, "forward_batch": n.forward_batch, "credits": n.credits,
                     "round_trip_ms": round(n.round_trip_s * 1e3, 3), "stream": n.stream}
            if "unreachable" in s:
                entry["error"] = s["unreachable"]
            else:
                samples = int(sum(d["samples"] for d in s["devices"]))
                cpu = host_cpu(s["cpu_s"], s["devices"], s["sample_load_cpu_s"])
                entry.update({"samples": samples, "batches": int(sum(d["batches"] for d in s["devices"])),
                              # forwarded batches the node served, and those of them that came on its stream
                              "forwarded_batches": int(s.get("served", 0)),
                              "stream_batches": int(s.get("streamed", 0)),
                              # while it served: from its first batch's arrival to its last answer
                              "samples_per_s": round(samples / s["serving_s"], 2) if s["serving_s"] > 0 else None,
                              "host_cpu_s": round(cpu.host_s, 3),
                              "simulated_card_copy_cpu_s": round(cpu.card_copy_s, 3),
                              "host_cpu_us_per_sample": cpu.us_per_sample(samples),
                              "device_stats": s["devices"]})
                if s["error"]:
                    entry["error"] = s["error"]
            nodes.append(entry)
        return {"address": self.address.text, "nodes": nodes, "round_trip_ms": round(self.round_trip_s * 1e3, 3),
                "test_s": round(run_s, 3), "ray": self.ray.__version__}

    def close(self) -> None:
        """Every node's actor stopped; a local:N cluster shut down with its processes."""
        ray = self.ray
        for d in self.devices:  # their streams and threads first: the actors are going
            d.close()
        for d in self.devices:
            d.join()
        for st in self._streams:  # those opened before the run's devices were (closed twice is fine)
            _quietly(st.close)
        for n in self.nodes:
            if n.actor is not None:
                _quietly(ray.kill, n.actor)
        if ray.is_initialized():
            _quietly(ray.shutdown)
        if self._local is not None:
            _quietly(self._local.shutdown)
            self._local = None


class HeadSUT(SystemUnderTest):
    """The head's engine. Never in throughput-only mode: there a driver thread wakes only when
    the newest batch a device holds is nearly done (right for a card, whose submit is cheap and
    whose batches end when announced), which would leave a node's credits unused through the
    round trip; here each answer is collected, and its credit spent again, as it comes."""

    def start(self, batch_timeout_s: float = 0.0, throughput_only: bool = False) -> None:
        super().start(batch_timeout_s, throughput_only=False)


def _absolute(path: str | None) -> str | None:
    """A path as the nodes must find it: absolute (a node's worker runs in a directory of its own)."""
    return str(Path(path).absolute()) if path else path


def _quietly(fn, *args) -> None:
    """Cleanup that must go on past a failure of its own (a node already gone, say)."""
    with suppress(Exception):
        fn(*args)


# -- preprocessing on every node ---------------------------------------------------------------

def preprocess_everywhere(address_text: str, workload: str, dataset: str, count: int | None, out: str,
                          dtype: str, layout: str, quantization, workers: int | None, chunk: int | None,
                          skip_bad: bool, log=print) -> None:
    """`visionperf preprocess ... --cluster ADDRESS`: the cache built on every node (a Ray task
    pinned to each), then checked to be the same everywhere."""
    address = parse_address(address_text)
    with Cluster.open(address_text, None, log) as c:
        ray = c.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = ray.remote(preprocess_on_node)
        q = quantization.to_json() if quantization else None
        refs = [task.options(num_cpus=0, max_retries=0,
                             scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False)).remote(
                    workload, dataset, count, out, dtype, layout, q, workers, chunk, skip_bad) for n in c.nodes]
        if address.is_local:
            log(f"local:{address.local_nodes}: the nodes share this disk: one builds {out}, the others wait for it")
        results = []
        for n, ref in zip(c.nodes, refs):
            r = call(ray, ref, n.name, 7 * 24 * 3600.0, "preprocessing")
            for line in r["log"]:
                log(f"{n.name}: {line}")
            results.append(r)
        first = results[0]["identity"]
        for n, r in zip(c.nodes, results):
            if r["identity"] != first:
                raise UserError(f"{n.name} built a cache that differs from {c.nodes[0].name}'s (another dataset, "
                                "or another visionperf or OpenCV): install the same versions and data everywhere")
        log(f"cache {out} ready on {len(c.nodes)} node(s), the same everywhere (fingerprint "
            f"{str(first['data_fingerprint'])[:12]})")


def describe_nodes(record: dict) -> list[str]:
    """One line per node of a run.json `cluster` record (the run's summary)."""

    def num(v, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    out = []
    for n in record.get("nodes", []):
        if "samples" not in n:
            out.append(f"{n['name']}: {n.get('error', 'no figures')}")
            continue
        out.append(f"{n['name']}: {n['samples']:,} samples, {num(n['samples_per_s'], ',.1f')}/s on {n['devices']} "
                   f"device(s), host CPU {num(n['host_cpu_us_per_sample'], '.1f')} us/sample, batches of "
                   f"{n['forward_batch']} ({n['credits']} in flight), round trip {n['round_trip_ms']:.2f} ms")
    return out
