"""Beyond one server: one LoadGen, many nodes, on Ray (`visionperf run ... --cluster ADDRESS`).

    head: LoadGen -> the engine (sut.SystemUnderTest) -> one RemoteNode device per node
    node: NodeServer, a Ray actor pinned there -> an ordinary single-node engine built by
          run.build_engine: the node's own topology, plan, devices, sample buffer replicas
          and post-processing
    between them: Ray for the session (placing and starting the nodes, checking versions and
          caches, loads, statistics, watching for a node's death), and a ZeroMQ stream per
          node for the forwarded batches (stream.py), opened when the session starts, its
          address handed over through Ray

The head is the process that runs LoadGen (the one `visionperf run --cluster` starts); to a
run it is one machine (run.Machine): Cluster gives the run its cache, devices and engine as
one server does.

Indices travel, pixels never. LoadGen's load and unload callbacks reach every node as the
cache indices to load (the engine's load hook), and each node loads them from its own
preprocessed cache, found and checked against the head's manifest like a single-node run's.
A batch travels as its cache indices; it comes back post-processed, as rows of [8-byte size |
response] (a label, or the 7-float detections), which the head's engine hands to LoadGen as
they are (its "prepacked" post-processing). The head keeps one byte per sample.

Work is pulled, not pushed. To the head's engine each node is one asynchronous device whose
credits (max_in_flight) are enough batches to keep its cards busy through the round trip; the
engine's driver for that node submits whenever it has room, so a faster node takes more and no
node idles while another queues. Offline forwards large batches (each fills every card of its
node several times over); Server and the streams small ones (one card's batch), formed under a
timeout that leaves room in the latency bound for the hop there and back (run/warmup.py).

Faults end the run with one line naming the node: a node that dies fails what it holds at
once (Ray reports the lost actor: the head holds a `watch` call open at each node), one that
stops answering is failed by the engine's watchdog, a stream that is cut (its connection
dropped) or carries a malformed message fails the node too; LoadGen never waits on a lost
sample. A cluster that cannot be reached, a Ray or
visionperf version that differs, a node without the cache or with another one: one line each.

`local:N` starts N node processes on this machine (Ray's own multi-node test cluster,
ray.cluster_utils.Cluster) for tests and demos: they share this machine's disk, so the run
builds the cache once here, as a single-node run would, and every node reads it.
"""

from .node import NodeServer
from .remote import RemoteNode, RemotePost, forward_plan
from .connect import Address, parse_address
from .session import Cluster, preprocess_everywhere

__all__ = ["Address", "Cluster", "NodeServer", "RemoteNode", "RemotePost", "forward_plan", "parse_address",
           "preprocess_everywhere"]
