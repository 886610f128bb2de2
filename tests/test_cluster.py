"""Many nodes on Ray (cluster/): one LoadGen in the driver, one NodeServer per node, indices over
the hop, responses back prepacked. The engine's side (the load hook, serving forwarded batches)
and the planning run without Ray; the rest runs on a Ray cluster of two node processes on this
machine (Ray's own ray.cluster_utils.Cluster), shared by the module's tests, and the real
`visionperf` command joined to it."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import visionperf
from test_sut import EchoDevice, LabelPost, N, make_data

from visionperf.cluster import forward_plan, parse_address
from visionperf.cluster.remote import RemotePost
from visionperf.cluster.scaling import cluster_args
from visionperf.cluster.connect import NAMESPACE, NODE_RESOURCE, _version_mismatch
from visionperf.errors import UserError
from visionperf.sut import SystemUnderTest

try:
    import ray
except ImportError:
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed (pip install 'visionperf[cluster]', "
                                                   "or make install EXTRAS=cluster)")


def one_line(p: subprocess.CompletedProcess) -> str:
    """The single `visionperf: error: ...` line a refused or failed run prints (exit 2)."""
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-3000:])
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


# ---- without Ray: the engine's side, the plan ----------------------------------------------------

def test_the_engine_serves_forwarded_batches_in_order_from_many_threads():
    """A node's engine answers each forwarded batch with its rows in the order asked, whoever
    calls and however many at once; the driver's load hook hears every load and unload."""
    sut = SystemUnderTest([EchoDevice("a"), EchoDevice("b")], make_data(), [()], [0, 0], LabelPost(), None, 4)
    heard = []
    sut.set_load_hook(lambda idx: heard.append(None if idx is None else [int(i) for i in idx]))
    sut.start(0.0, throughput_only=True)
    sut.load(range(N))
    stride = 8 + sut.max_response_bytes
    out = {}

    def ask(k):
        idx = [(k * 7 + j) % N for j in range(1 + k % 9)]
        out[k] = (idx, sut.serve(idx))

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    sut.unload()
    sut.stop()
    assert len(out) == 24
    for idx, rows in out.values():
        a = np.frombuffer(rows, np.uint8).reshape(len(idx), stride)
        assert (a[:, :8].copy().view(np.uint64)[:, 0] == 4).all()  # one float32 label each
        assert list(a[:, 8:12].copy().view(np.float32)[:, 0]) == [10.0 * i for i in idx]
    assert heard == [list(range(N)), None]
    assert sut.serve([]) == b""


def test_a_failing_device_fails_the_forwarded_batch_with_its_error():
    sut = SystemUnderTest([EchoDevice("card7", fail_on=1)], make_data(), [()], [0], LabelPost(), None, 4)
    sut.start(0.0)
    sut.load(range(N))
    with pytest.raises(Exception, match=r"4 of 4 samples failed: card7: RuntimeError: device fell over"):
        sut.serve([0, 1, 2, 3])
    sut.stop()


def test_nodes_on_one_driver_pull_work_so_a_faster_one_takes_more():
    """The driver's engine runs every node on one driver thread (RemoteNodes share one CPU):
    one queue, and whichever node has room takes the next batch, for one-sample queries too
    (Server), so a node 4x faster answers far more than the slow one, and neither is idle."""
    from test_sut import AsyncEchoDevice

    cpu = (max(os.sched_getaffinity(0)),)
    fast, slow = (AsyncEchoDevice(name, delay=d, cpus=cpu, in_flight=2) for name, d in (("fast", 0.002),
                                                                                       ("slow", 0.008)))
    sut = SystemUnderTest([fast, slow], make_data(), [()], [0, 0], LabelPost(), None, 4)
    sut.start(0.003)
    sut.load(range(N))
    sut.record_responses()
    n = 400
    for i in range(n):  # one sample at a time, about 2,000 a second
        sut.issue([i], [i % N])
        time.sleep(0.0005)
    got = sut.wait_responses(n, 20)
    stats = {st["name"]: st["samples"] for st in sut.stats()}
    sut.stop()
    fast.close()
    slow.close()
    assert len(got) == n and stats["fast"] + stats["slow"] == n
    assert stats["fast"] > 2 * stats["slow"] > 0, stats


def test_addresses_and_forwarding_plans():
    assert parse_address("local:3").local_nodes == 3 and parse_address("auto").local_nodes == 0
    for bad in ("local:0", "local:x", ""):
        with pytest.raises(UserError, match="--cluster"):
            parse_address(bad)
    with pytest.raises(UserError, match="Ray Client .* --cluster HEAD:6379 or auto"):
        parse_address("ray://10.0.0.1:10001")  # a relay per batch: refused with the way that works
    assert cluster_args("local:4", 2) == ["--cluster", "local:2"]
    assert cluster_args("10.0.0.1:6379", 2) == ["--cluster", "10.0.0.1:6379", "--nodes", "2"]
    with pytest.raises(UserError, match="--nodes 3"):
        cluster_args("local:2", 3)
    cards = [{"batch_size": 8, "max_in_flight": 2, "peak_rate": 1000.0}] * 2
    # Offline: each batch fills both cards 4 times; two and one in transit cover a 1 ms hop
    assert forward_plan("Offline", cards, 0.001) == (64, 3)
    # Server: one batch for both cards side by side; credits: what the cards hold (2 each, side
    # by side), and more only for a round trip longer than a batch (2000/s x 10 ms / 16 = 2 batches)
    assert forward_plan("Server", cards, 0.001) == (16, 2)
    assert forward_plan("Server", cards, 0.010) == (16, 2 + 1)
    assert RemotePost(12).engine_spec() == ("prepacked", 12)
    assert RemotePost(12).output_shapes(5, None) == [((5, 20), np.uint8)]


def test_rays_version_mismatch_is_said_in_one_clause():
    text = ("Version mismatch: The cluster was started with:\n    Ray: 2.9.0\n    Python: 3.11.7\n"
            "This process on node 10.0.0.2 was started with:\n    Ray: 2.60.0\n    Python: 3.11.7\n")
    assert _version_mismatch(text) == "the cluster runs Ray 2.9.0 (Python 3.11.7), this machine Ray 2.60.0 (Python 3.11.7)"


def test_cluster_options_are_refused_in_one_line(imagenet_dir, slim_model, tmp_path, monkeypatch):
    base = ["run", "resnet50", "--scenario", "Offline", "--backend", "null", "--model", slim_model,
            "--dataset", imagenet_dir, "--out", tmp_path / "out"]
    line = one_line(visionperf(*base, "--nodes", "2", check=False))
    assert "--nodes" in line and "--cluster" in line
    line = one_line(visionperf(*base, "--cluster", "local:0", check=False))
    assert "local:N" in line
    if ray is not None:  # nobody listens on port 9 of this machine
        line = one_line(visionperf(*base, "--cluster", "127.0.0.1:9", check=False))
        assert line.startswith("visionperf: error: --cluster 127.0.0.1:9: no Ray cluster answers there"), line
        monkeypatch.setenv("VISIONPERF_STREAM_PORTS", "9-8")
        p = visionperf(*base, "--cluster", "127.0.0.1:9", check=False)
        assert one_line(p).startswith("visionperf: error: VISIONPERF_STREAM_PORTS=9-8: give the ports a node may "
                                      "bind its stream to as lo-hi")


# ---- the stream (cluster/stream.py) alone: both ends on this machine, no Ray ----------------------

try:
    import zmq
except ImportError:
    zmq = None

needs_zmq = pytest.mark.skipif(zmq is None, reason="pyzmq is not installed (pip install 'visionperf[cluster]')")
ROW = 16  # [8-byte size | 8 bytes]: the echo below answers each index as its own response


def echo_rows(indices) -> bytes:
    idx = np.frombuffer(indices, np.int64)
    rows = np.zeros((len(idx), 2), np.int64)
    rows[:, 0], rows[:, 1] = 8, idx * 10
    return rows.tobytes()


@pytest.fixture
def stream_pair():
    """A node's end serving SERVE on 127.0.0.1 and the driver's end joined to it, as a RemoteNode
    without Ray (nothing watches it but the stream's own monitor)."""
    from visionperf.cluster.remote import RemoteNode
    from visionperf.cluster.stream import HeadStream, NodeStream, port_range

    made = []

    def make(serve=echo_rows, credits=4):
        node = NodeStream(serve, "127.0.0.1", port_range(), 8, "node9")
        head = HeadStream("node9@127.0.0.1", node.addresses)
        rtt = head.round_trip(3, 10.0)
        dev = RemoteNode("node9@127.0.0.1", None, head, 4, credits, ROW, rtt, None, 0.0005)
        made.append((node, dev))
        return node, dev

    yield make
    for node, dev in made:
        dev.close()
        node.close()


def collect(dev, ticket, timeout_s=20.0):
    out = dev.collect(ticket, timeout_s)
    assert out is not None, "no answer"
    return out[0]


@needs_zmq
def test_the_stream_carries_batches_there_and_back_in_any_order(stream_pair):
    """Several batches in flight: the node runs them at once and answers them as they end (the
    later ones first here); each answer reaches its own batch, which the engine collects in order."""
    def slow_first(indices):
        idx = np.frombuffer(indices, np.int64)
        time.sleep(0.3 if len(idx) and idx[0] == 0 else 0.0)
        return echo_rows(indices)

    node, dev = stream_pair(slow_first)
    batches = [list(range(k * 4, k * 4 + 1 + k)) for k in range(4)]
    tickets = [dev.submit(None, b) for b in batches]
    for b, t in zip(batches, tickets):
        rows = collect(dev, t).copy().view(np.int64)
        assert rows.shape == (len(b), 2) and list(rows[:, 1]) == [10 * i for i in b] and (rows[:, 0] == 8).all()
    assert dev.collect(dev.submit(None, []), 20)[0].shape == (0, ROW)
    big = list(range(10000))  # 80 KB of indices out, 160 KB of answers back: frames passed without a copy
    rows = collect(dev, dev.submit(None, big)).copy().view(np.int64)
    assert list(rows[:, 1]) == [10 * i for i in big]


@needs_zmq
def test_a_batch_the_node_fails_fails_with_the_nodes_own_line(stream_pair):
    from visionperf.cluster.remote import NodeFailed

    def failing(indices):
        raise RuntimeError("4 of 4 samples failed: card7: device fell over\n  (a traceback)")

    _, dev = stream_pair(failing)
    with pytest.raises(NodeFailed, match=r"^RuntimeError: 4 of 4 samples failed: card7: device fell over$"):
        collect(dev, dev.submit(None, [0, 1, 2, 3]))


def _frames(kind, seq, count, body, size=None):
    from visionperf.cluster.stream import header

    return [header(kind, seq, count, len(body) if size is None else size), body]


@needs_zmq
@pytest.mark.fault
@pytest.mark.parametrize("bad, why", [
    (lambda S: [b"one frame"], "a message of one frame"),
    (lambda S: [b"VPS2" + bytes(20), b""], "does not start with"),
    (lambda S: [b"short", b""], "a header of 5 bytes"),
    (lambda S: _frames(S.ANSWER, 1, 2, bytes(ROW), size=2 * ROW), "whose body is 16 bytes, its header says 32"),
    (lambda S: _frames(S.ANSWER, 1, 2, bytes(2 * ROW)) + [b"more"], "more than two frames"),
    (lambda S: _frames(S.BATCH, 1, 1, bytes(8)), "kind batch where answer or error belongs"),
    (lambda S: _frames(S.ANSWER, 77, 1, bytes(ROW)), "an answer to batch 77, which it does not hold"),
    (lambda S: _frames(S.ANSWER, 1, 2, bytes(2 * ROW - 3)), "answered 29 bytes for 2 samples, expected 32"),
])
def test_a_malformed_answer_fails_what_the_node_holds_and_all_after(stream_pair, bad, why):
    """Half a message, a foreign one, sizes that disagree, an answer to nothing: the node's
    batches fail at once with one line, the stream carries nothing more for the run."""
    from visionperf.cluster import stream as S
    from visionperf.cluster.remote import NodeFailed

    hold = threading.Event()
    node, dev = stream_pair(lambda idx: (hold.wait(20), echo_rows(idx))[1])
    held = dev.submit(None, [1, 2])
    node.send(bad(S))  # what the node sends next
    with pytest.raises(NodeFailed, match=why) as e:
        collect(dev, held)
    assert "\n" not in str(e.value)
    with pytest.raises(NodeFailed, match=why):
        collect(dev, dev.submit(None, [3]))  # and every later batch
    hold.set()


@needs_zmq
@pytest.mark.fault
def test_a_malformed_batch_is_refused_by_the_node_in_one_line(stream_pair):
    from visionperf.cluster import stream as S
    from visionperf.cluster.remote import NodeFailed

    hold = threading.Event()
    _, dev = stream_pair(lambda idx: (hold.wait(20), echo_rows(idx))[1])
    held = dev.submit(None, [1, 2])
    with dev.stream._send_lock:  # a batch of 3 samples in 20 bytes
        dev.stream._push.send_multipart(_frames(S.BATCH, 99, 3, bytes(20)))
    with pytest.raises(NodeFailed, match=r"the node received a malformed message: a batch of 3 samples in 20 bytes"):
        collect(dev, held)
    hold.set()


@needs_zmq
@pytest.mark.fault
def test_a_stream_cut_under_held_batches_fails_them_at_once(stream_pair):
    """The node's sockets closed while it holds a batch (no answer will come): the driver's
    monitor sees the connection drop and fails it, and every later one, with one line."""
    from visionperf.cluster.remote import NodeLost

    hold = threading.Event()
    node, dev = stream_pair(lambda idx: (hold.wait(20), echo_rows(idx))[1])
    held = dev.submit(None, [1, 2])
    node.close()
    with pytest.raises(NodeLost, match=r"^its stream was cut \(the connection dropped\)"):
        collect(dev, held)
    with pytest.raises(NodeLost, match="its stream was cut"):
        collect(dev, dev.submit(None, [3]))
    hold.set()


@needs_zmq
def test_a_stream_address_nobody_answers_is_one_line():
    import socket

    from visionperf.cluster.stream import HeadStream

    with socket.socket() as s:  # a port nobody listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    head = HeadStream("node3@127.0.0.1", [f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port}"])
    try:
        with pytest.raises(UserError) as e:
            head.round_trip(3, 0.5)
    finally:
        head.close()
    assert str(e.value).startswith(f"node3@127.0.0.1's stream at tcp://127.0.0.1:{port} did not answer within 0.5 s: "
                                   "let the driver reach ports 46000-46999 on every node"), e.value
    with pytest.raises(UserError, match="gave no stream address"):
        HeadStream("node3@x", None)


def test_the_streams_port_range_is_a_setting(monkeypatch):
    from visionperf.cluster.stream import port_range

    monkeypatch.delenv("VISIONPERF_STREAM_PORTS", raising=False)
    assert port_range() == (46000, 46999)
    monkeypatch.setenv("VISIONPERF_STREAM_PORTS", "50000-50010")
    assert port_range() == (50000, 50010)
    for bad in ("50010-50000", "80-90", "5000", "a-b", "50000-70000"):
        with pytest.raises(UserError, match=f"VISIONPERF_STREAM_PORTS={bad}: give the ports"):
            port_range(bad)


# ---- on a Ray cluster of two node processes ------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two Ray nodes on this machine, marked for visionperf, each with a cache root of its own
    (their default, $VISIONPERF_CACHE), joined by this process too (to find and hurt the nodes'
    actors); its address is what --cluster is given."""
    if ray is None:
        pytest.skip("Ray is not installed (pip install 'visionperf[cluster]')")
    from ray.cluster_utils import Cluster

    roots = [tmp_path_factory.mktemp(f"node{k}-cache") for k in range(2)]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    node = {"num_cpus": 1, "object_store_memory": 96 * 2**20}
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False, "resources": {NODE_RESOURCE: 1},
                                                       "env_vars": {"VISIONPERF_CACHE": str(roots[0])}})
    c.add_node(**node, resources={NODE_RESOURCE: 2}, env_vars={"VISIONPERF_CACHE": str(roots[1])})
    c.wait_for_nodes()
    ray.init(address=c.address, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
    for s, h in handlers.items():
        signal.signal(s, h)
    c.roots = roots
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def shared_cache(cluster, imagenet_dir, slim_model, tmp_path_factory):
    """`visionperf preprocess --cluster`: the cache built on every node (they share this disk:
    one builds, the other waits for it and finds it)."""
    out = tmp_path_factory.mktemp("cluster-cache") / "resnet50"
    p = visionperf("preprocess", "resnet50", "--dataset", imagenet_dir, "--out", out, "--cluster", cluster.address)
    assert "the same everywhere" in p.stdout, p.stdout
    return out


def run_args(cluster, imagenet_dir, slim_model, cache, out, *extra):
    return ["run", "resnet50", "--model", slim_model, "--dataset", imagenet_dir, "--cache", cache, "--out", out,
            "--cluster", cluster.address, "--quiet", *map(str, extra)]


def record(out: Path, scenario: str = "Offline", mode: str = "performance/run_1") -> dict:
    return json.loads((out / "resnet50" / scenario / mode / "run.json").read_text())


@needs_ray
@pytest.mark.slow
def test_offline_over_two_nodes_is_valid_and_both_nodes_serve(cluster, shared_cache, imagenet_dir, slim_model,
                                                              tmp_path):
    p = visionperf(*run_args(cluster, imagenet_dir, slim_model, shared_cache, tmp_path, "--scenario", "Offline",
                             "--backend", "simulated", "--devices", "2", "--card-rate", "1000", "--duration", "1"))
    rec = record(tmp_path)
    assert rec["result"]["valid"], p.stdout
    nodes = rec["cluster"]["nodes"]
    assert [n["name"].split("@")[0] for n in nodes] == ["node0", "node1"]
    assert all(n["samples"] > 0 and n["devices"] == 2 and n["samples_per_s"] > 0 for n in nodes), nodes
    assert sum(n["samples"] for n in nodes) == sum(s["samples"] for s in rec["device_stats"])
    assert all(n["host_cpu_us_per_sample"] > 0 and n["round_trip_ms"] > 0 for n in nodes)
    assert rec["host_cpu_us_per_sample"] > 0  # the driver's own
    assert nodes[0]["forward_batch"] == 4 * 2 * 8  # Offline: large batches
    # every batch came on the node's stream, bound on the node's address (not Ray's actor calls)
    assert all(n["stream_batches"] == n["forwarded_batches"] > 0 for n in nodes), nodes
    assert all(n["stream"].startswith(f"tcp://{n['ip']}:") for n in nodes), nodes


@needs_ray
@pytest.mark.slow
def test_server_over_two_nodes_answers_every_query(cluster, shared_cache, imagenet_dir, slim_model, tmp_path):
    visionperf(*run_args(cluster, imagenet_dir, slim_model, shared_cache, tmp_path, "--scenario", "Server",
                         "--backend", "simulated", "--devices", "1", "--card-rate", "2000", "--target-qps", "300",
                         "--duration", "1"))
    rec = record(tmp_path, "Server")
    assert rec["result"]["latency_ns"]  # LoadGen saw every query answered (else no summary)
    nodes = rec["cluster"]["nodes"]
    assert nodes[0]["forward_batch"] == 8  # Server: one batch for the node's one card
    assert all(n["stream_batches"] == n["forwarded_batches"] > 0 for n in nodes), nodes


@needs_ray
@pytest.mark.slow
def test_accuracy_over_two_nodes_is_that_of_one_node(cluster, shared_cache, imagenet_dir, slim_model, tmp_path):
    """The same figure, and the same answer for every sample, as one node with the same devices."""
    # batches of 2 (forwarded 8 at a time, 3 held per node): both nodes answer some of the 48
    common = ["--scenario", "Offline", "--mode", "accuracy", "--backend", "onnxruntime", "--devices", "1",
              "--batch-size", "2"]
    visionperf(*run_args(cluster, imagenet_dir, slim_model, shared_cache, tmp_path / "two", *common))
    visionperf("run", "resnet50", "--model", slim_model, "--dataset", imagenet_dir, "--cache", shared_cache,
               "--out", tmp_path / "one", "--quiet", *common)
    acc = [(tmp_path / d / "resnet50/Offline/accuracy/accuracy.txt").read_text().splitlines()[0] for d in ("one", "two")]
    assert acc[0] == acc[1] and acc[0].startswith("accuracy="), acc
    logs = [{e["qsl_idx"]: e["data"] for e in json.loads((tmp_path / d / "resnet50/Offline/accuracy/"
                                                             "mlperf_log_accuracy.json").read_text())}
            for d in ("one", "two")]
    assert len(logs[0]) == 48 and logs[0] == logs[1]
    assert all(n["samples"] > 0 for n in record(tmp_path / "two", mode="accuracy")["cluster"]["nodes"])
    assert len(set(logs[0].values())) > 1  # answers that tell samples apart


@needs_ray
def test_a_node_without_the_cache_is_one_line(cluster, imagenet_dir, slim_model, tmp_path):
    p = visionperf(*run_args(cluster, imagenet_dir, slim_model, tmp_path / "nothing", tmp_path / "out",
                             "--scenario", "Offline", "--backend", "null"), check=False)
    line = one_line(p)
    assert line.startswith("visionperf: error: node0@") and "has no cache for this run at" in line, line
    assert f"--cluster {cluster.address}" in line and "visionperf preprocess resnet50" in line
    assert not (tmp_path / "out/resnet50/Offline/performance/run_1").exists()


@needs_ray
def test_nodes_whose_caches_differ_are_refused_in_one_line(cluster, shared_cache, imagenet_dir, slim_model,
                                                           tmp_path):
    """Each node finds its cache under its own root (no --cache): the same settings and sources,
    other bytes on node1 (say, another OpenCV there)."""
    import shutil

    from visionperf.cache import data_fingerprint

    for k, root in enumerate(cluster.roots):
        where = root / f"resnet50-{_key_dir(shared_cache)}"
        shutil.copytree(shared_cache, where, dirs_exist_ok=True)
        if k == 1:
            data = np.load(where / "data.npy", mmap_mode="r+")
            data[:] = 0
            data.flush()
            del data
            m = json.loads((where / "manifest.json").read_text())
            m["data_fingerprint"] = data_fingerprint(where / "data.npy")
            (where / "manifest.json").write_text(json.dumps(m))
    p = visionperf("run", "resnet50", "--model", slim_model, "--dataset", imagenet_dir, "--out", tmp_path / "out",
                   "--cluster", cluster.address, "--scenario", "Offline", "--backend", "null", check=False)
    line = one_line(p)
    assert "node1@" in line and "differs from node0@" in line and "data_fingerprint" in line, line


def _key_dir(cache: Path) -> str:
    """The directory name a run looks for under a cache root: resnet50-<dtype>-<layout>-<key>."""
    from visionperf.cache import _settings_key

    m = json.loads((cache / "manifest.json").read_text())
    return f"{m['dtype']}-{m['layout'].lower()}-{_settings_key(m)}"


def _start_and_wait_for_the_test(args, env=None) -> subprocess.Popen:
    """A run in a child process, returned once LoadGen's test is under way (a moment after the
    run says it starts it: LoadGen loads its samples first)."""
    proc = subprocess.Popen([sys.executable, "-m", "visionperf", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if line.startswith("running resnet50"):
            time.sleep(1.5)
            return proc
        assert time.monotonic() < deadline
    raise AssertionError(f"the run ended before its test: {proc.stderr.read()}")


def _node_actor(proc: subprocess.Popen, k: int):
    return ray.get_actor(f"visionperf-{proc.pid}-node{k}", namespace=NAMESPACE)


def _finish(proc: subprocess.Popen, timeout: float = 60) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@needs_ray
@pytest.mark.fault
@pytest.mark.parametrize("how", ["ray.kill", "SIGKILL"])
def test_a_node_that_dies_fails_the_run_with_one_line_naming_it(cluster, shared_cache, imagenet_dir, slim_model,
                                                                tmp_path, how):
    """Its actor killed by Ray, or its process killed outright: its stream drops and Ray reports
    the death; the line names the death."""
    proc = _start_and_wait_for_the_test(run_args(
        cluster, imagenet_dir, slim_model, shared_cache, tmp_path, "--scenario", "Server", "--backend",
        "simulated", "--devices", "1", "--card-rate", "2000", "--target-qps", "200", "--duration", "4"))
    actor = _node_actor(proc, 1)
    pid = ray.get(actor.describe.remote(), timeout=30)["pid"]
    t0 = time.monotonic()
    if how == "ray.kill":
        ray.kill(actor, no_restart=True)
    else:
        os.kill(pid, signal.SIGKILL)
    p = _finish(proc)
    line = one_line(p)
    assert line.startswith("visionperf: error: the run failed: node1@") and "the node is gone" in line, line
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "resnet50/Server/performance/run_1").exists()


def _cut_stream(server):
    server.close_stream()


def _half_message(server):
    server._stream.send([b"half a message"])  # half of what the stream carries


@needs_ray
@pytest.mark.fault
@pytest.mark.parametrize("hurt, said", [
    (_cut_stream, "NodeLost: the node closed its stream"),
    (_half_message, "NodeFailed: its stream carried a malformed message (a message of one frame (14 bytes)"),
])
def test_a_stream_cut_or_broken_mid_run_ends_the_run_with_one_line(cluster, shared_cache, imagenet_dir, slim_model,
                                                                   tmp_path, hurt, said):
    """The node lives on, its stream fails under the run: its sockets closed, or half a message
    sent: the batches it holds fail at once, the run ends with one line and keeps nothing."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # HURT runs in the node's actor
    proc = _start_and_wait_for_the_test(run_args(
        cluster, imagenet_dir, slim_model, shared_cache, tmp_path, "--scenario", "Server", "--backend",
        "simulated", "--devices", "1", "--card-rate", "2000", "--target-qps", "200", "--duration", "4"))
    ray.get(_node_actor(proc, 1).__ray_call__.remote(hurt), timeout=30)
    line = one_line(_finish(proc))
    assert line.startswith("visionperf: error: the run failed: node1@") and said in line, line
    assert not (tmp_path / "resnet50/Server/performance/run_1").exists()


@needs_ray
@pytest.mark.fault
def test_a_node_that_stops_answering_is_failed_by_the_watchdog(cluster, shared_cache, imagenet_dir, slim_model,
                                                               tmp_path):
    env = dict(os.environ, VISIONPERF_WATCHDOG_S="1")
    proc = _start_and_wait_for_the_test(run_args(
        cluster, imagenet_dir, slim_model, shared_cache, tmp_path, "--scenario", "Server", "--backend",
        "simulated", "--devices", "1", "--card-rate", "2000", "--target-qps", "200", "--duration", "4"), env)
    pid = ray.get(_node_actor(proc, 0).describe.remote(), timeout=30)["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        p = _finish(proc)
    finally:
        os.kill(pid, signal.SIGKILL)
    line = one_line(p)
    assert line.startswith("visionperf: error: the run failed: node0@") and "the device is stuck" in line, line


@needs_ray
@pytest.mark.slow
def test_scaling_over_nodes_beside_one_node(cluster, shared_cache, imagenet_dir, slim_model, tmp_path):
    p = visionperf("scale", "resnet50", "--nodes", "1,2", "--devices", "1", "--cluster", cluster.address,
                   "--backend", "simulated", "--card-rate", "1000", "--duration", "0.5", "--model", slim_model,
                   "--dataset", imagenet_dir, "--cache", shared_cache, "--out", tmp_path)
    study = json.loads((tmp_path / "scaling-nodes.json").read_text())
    points = study["points"]
    assert [(q["nodes"], q["cards"]) for q in points] == [(1, 1), (2, 2)], p.stdout
    assert all(q["metric"] > 0 and q["one_node"] > 0 and q["node_cpu_us_per_sample"] for q in points)
    assert (tmp_path / "scaling-nodes.png").stat().st_size > 1000


@needs_ray
@pytest.mark.slow
def test_a_local_cluster_of_two_node_processes(imagenet_dir, slim_model, shared_cache, tmp_path):
    """--cluster local:2: the command starts its own two nodes here, runs VALID, and stops them."""
    p = visionperf("run", "resnet50", "--scenario", "Offline", "--backend", "simulated", "--devices", "1",
                   "--card-rate", "1000", "--duration", "1", "--model", slim_model, "--dataset", imagenet_dir,
                   "--cache", shared_cache, "--out", tmp_path, "--cluster", "local:2", "--quiet")
    assert "started 2 node process(es)" in p.stdout
    rec = record(tmp_path)
    assert rec["result"]["valid"] and len(rec["cluster"]["nodes"]) == 2
