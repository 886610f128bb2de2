"""The head's side of a cluster run: each node as one asynchronous device of the head's engine
(RemoteNode), its batches on the node's stream (stream.py) and its life watched through Ray,
the responses handed on as the nodes packed them (RemotePost), and how large a batch each node
is sent and how many it holds (forward_plan)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from .stream import ANSWER, HeadStream

OFFLINE_FILLS = 4  # an Offline forwarded batch fills each card of its node this many times
CALL_TIMEOUT_S = 30.0  # small calls: statistics, unload, a round trip
AIM_EARLY_NS = 200_000  # the engine looks for an answer this long before it is expected
BIAS_STEP_NS = 5_000_000  # the most one answer moves the estimate (before the moving average's 1/8)
MAX_BIAS_NS = 50_000_000
WATCH_SLICE_S = 0.2  # how often the Ray watcher looks whether the run is over (it wakes at once on a death)
CUT_GRACE_S = 5.0  # a dropped connection waits this long for Ray to say whether the node died


class NodeLost(Exception):
    """A node's actor or machine is gone (its process died, or the node left the cluster), or its
    stream was cut."""


class NodeFailed(Exception):
    """A node answered a batch with an error of its own (a device failed there), or its stream
    carried a message that breaks the stream's layout."""


@dataclass
class _Ticket:
    seq: int
    ready_ns: int  # when it is expected back (the engine looks then)
    submitted_ns: int
    rows: int
    done: threading.Event = field(default_factory=threading.Event)
    answer: object = None  # bytes, or a large answer's buffer (no copy)
    error: BaseException | None = None
    done_ns: int = 0


class RemoteNode:
    """One node, as the head's engine sees it: an asynchronous device (backends.AsyncDevice)
    that takes a batch's cache indices (reads_input is False: the head gathers nothing) and
    returns the node's responses as one output of prepacked rows.

    submit sends the batch on the node's stream (a sequence number and its indices) and
    returns; the stream's receiver thread matches each answer to its ticket by number (a node
    runs several batches at once, so answers may come out of order; the engine collects them
    in order) and marks it done, with the GIL released while it waits. So a batch the engine
    looks for a little early costs a check of an event: collect waits up to WAIT_SLICE_S for it
    (an event wait, no CPU) rather than return at once and have the engine ask again 20 us
    later through Python. The driver thread (the engine's) that it holds serves this node alone.

    The node's life is watched through Ray (a `watch` call held open at the node, which fails
    when its actor dies) and through the stream (its sockets' monitor): either fails every
    batch the node holds at once, with one line.

    ready_ns is the node's pace: one round trip plus the batch's own service time at the node's
    peak rate after it is sent, and never before the batch ahead of it plus its service time;
    a node without a declared peak is paced by its answers' moving average."""

    fixed_batch = False
    reads_input = False
    input_shape = (1,)
    input_dtype = np.dtype(np.uint8)
    numa_node = None

    def __init__(self, name: str, actor, stream: HeadStream, batch_size: int, credits: int, row_bytes: int,
                 round_trip_s: float, peak_rate: float | None, wait_slice_s: float, cpus: tuple[int, ...] = ()):
        self.name, self.actor, self.stream, self.cpus = name, actor, stream, tuple(cpus)
        self.batch_size, self.max_in_flight = int(batch_size), int(credits)
        self.row_bytes = int(row_bytes)
        self.peak_rate = peak_rate
        self.wait_slice_s = float(wait_slice_s)
        self._rtt_ns = int(round_trip_s * 1e9)
        self._per_sample_ns = 1e9 / peak_rate if peak_rate else 0.0
        self._last_ready = 0  # when the newest batch sent is expected back
        self._latency_ns = 0.0  # moving average of submit to answer, for nodes of unknown pace
        # Learned from the answers: how much later than the model they come (the hop's own
        # time, the node's CPU), so the engine looks just before an answer arrives (AIM_EARLY_NS)
        # and then waits for it in collect, instead of looking too late or polling for it.
        self._bias_ns = 0.0
        self._last_told = 0  # the ready time given with the newest batch
        self._seq = 0
        self._out: dict[int, _Ticket] = {}  # sent, not yet answered
        self._lock = threading.Lock()
        self._error: BaseException | None = None  # the node's failure: every batch after it fails too
        self._closed = threading.Event()
        self._gone = threading.Event()  # Ray said the node died
        stream.start(self._answered, self._stream_fault)
        self._watcher = None
        if actor is not None:
            self._watcher = threading.Thread(target=self._watch, name=f"visionperf {name} watch", daemon=True)
            self._watcher.start()

    def submit(self, batch, indices) -> _Ticket:
        n = len(indices)
        now = time.monotonic_ns()
        if self._per_sample_ns:
            service = int(n * self._per_sample_ns)
            ready = max(now + self._rtt_ns + service, self._last_ready + service)
        else:
            ready = now + int(0.8 * self._latency_ns) if self._latency_ns else now + self._rtt_ns
        self._last_ready = ready
        # never before the batch ahead of it: the engine collects them in order
        self._last_told = max(ready + int(self._bias_ns), self._last_told)
        self._seq += 1
        t = _Ticket(self._seq, self._last_told, now, n)
        with self._lock:  # known before it is sent: its answer may come back at once
            if self._error is not None:
                t.error = self._error
                t.done.set()
                return t
            self._out[t.seq] = t
        try:
            self.stream.send_batch(t.seq, np.asarray(indices, np.int64))
        except Exception as e:  # noqa: BLE001 (zmq.Again: the node takes no more; any other: the socket failed)
            import zmq

            why = "the node took no more batches" if isinstance(e, zmq.Again) else f"sending failed ({e})"
            self._fail(NodeLost(f"its stream is stuck: {why}"))
        return t

    def _answered(self, kind: int, seq: int, count: int, body) -> None:
        """The receiver thread: one answer (or a batch's error) from the node, to its ticket."""
        with self._lock:
            t = self._out.pop(seq, None)
            behind = len(self._out)
        if t is None:
            if seq == 0 and kind != ANSWER:  # the node's word on the stream itself
                self._fail(NodeFailed(bytes(body).decode("utf-8", "replace")))
            else:
                self._stream_fault("malformed", f"an answer to batch {seq}, which it does not hold")
            return
        t.done_ns = time.monotonic_ns()
        if kind != ANSWER:
            t.error = NodeFailed(bytes(body).decode("utf-8", "replace"))
        elif count != t.rows or len(body) != t.rows * self.row_bytes:
            t.error = NodeFailed(f"answered {len(body)} bytes for {t.rows} samples, expected "
                                 f"{t.rows * self.row_bytes}: the node runs another post-processing")
            t.done.set()
            self._fail(t.error)
            return
        else:
            t.answer = body
        if self._per_sample_ns:  # behind its peak pace: the batches still out end later than guessed
            self._last_ready = max(self._last_ready, t.done_ns + int(behind * self.batch_size * self._per_sample_ns))
        # after the engine was told to look (>0) or before; a stall (a machine swapping, a
        # node paused) moves the estimate by a bounded step only
        late = min(max(t.done_ns - t.ready_ns, -BIAS_STEP_NS), BIAS_STEP_NS)
        self._bias_ns = min(max(self._bias_ns + (late - AIM_EARLY_NS) / 8, -float(self._rtt_ns)), MAX_BIAS_NS)
        took = t.done_ns - t.submitted_ns
        self._latency_ns = took if not self._latency_ns else self._latency_ns + (took - self._latency_ns) / 8
        t.done.set()

    def _stream_fault(self, what: str, text: str) -> None:
        if self._closed.is_set():
            return
        if what == "malformed":
            self._fail(NodeFailed(f"its stream carried a malformed message ({text}): the run's answers from it "
                                  "cannot be trusted"))
            return
        # A dropped connection: a node that died (Ray says so in a moment: its line names the
        # death) or a stream cut under a node that lives on.
        threading.Thread(target=self._cut, args=(text,), name=f"visionperf {self.name} cut", daemon=True).start()

    def _cut(self, text: str) -> None:
        if self._gone.wait(CUT_GRACE_S if self._watcher is not None else 0):
            return
        self._fail(NodeLost(f"its stream was cut ({text})" + (f" and Ray did not report the node dead within "
                            f"{CUT_GRACE_S:g} s" if self._watcher is not None else "") + ": its network, or its "
                            "stream's sockets, failed"))

    def _watch(self) -> None:
        """Ray's word on the node: `watch` returns when the node closes its stream, and fails
        when its actor dies (its process or machine gone)."""
        import ray

        try:
            ref = self.actor.watch.remote()
        except Exception:  # noqa: BLE001 (Ray already shut down: the run is over)
            return
        while not self._closed.is_set():
            try:
                ready, _ = ray.wait([ref], timeout=WATCH_SLICE_S)
            except Exception:  # noqa: BLE001 (Ray shut down under it: the run is over)
                return
            if not ready or self._closed.is_set():
                continue
            try:
                _result(ray, ref, CALL_TIMEOUT_S)
                err = NodeLost("the node closed its stream")
            except (NodeLost, NodeFailed) as e:
                err = e
            except Exception as e:  # noqa: BLE001
                err = NodeLost(f"the node is unreachable ({first_line(e)})")
            self._gone.set()
            self._fail(err)
            return

    def _fail(self, error: BaseException) -> None:
        """The node's end: every batch it holds fails with ERROR at once, and every later one."""
        with self._lock:
            if self._error is not None:
                return
            self._error = error
            held, self._out = list(self._out.values()), {}
        for t in held:
            t.error = error
            t.done_ns = time.monotonic_ns()
            t.done.set()

    def collect(self, ticket: _Ticket, timeout_s: float | None):
        wait = None if timeout_s is None else max(float(timeout_s), self.wait_slice_s)
        if not ticket.done.wait(wait):
            return None
        if ticket.error is not None:
            raise ticket.error
        out = np.frombuffer(ticket.answer, np.uint8)
        ticket.answer = None
        return [out.reshape(ticket.rows, self.row_bytes)]

    def reset_stats(self) -> None:
        import ray

        call(ray, self.actor.reset_stats.remote(), self.name, CALL_TIMEOUT_S, "resetting its counters")

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.stream.close()

    def join(self) -> None:
        """The Ray watcher gone (after close): Ray may be shut down next."""
        if self._watcher is not None:
            self._watcher.join(2 * WATCH_SLICE_S)


def _result(ray, ref, timeout_s: float):
    """ray.get of one call, its errors as NodeLost or NodeFailed in one line (TimeoutError: not
    answered yet)."""
    try:
        return ray.get(ref, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise TimeoutError from None
    except ray.exceptions.RayActorError as e:
        raise NodeLost(f"the node is gone ({first_line(e)}): its process or machine stopped") from None
    except ray.exceptions.RayTaskError as e:
        raise NodeFailed(cause_of(e)) from None
    except ray.exceptions.RayError as e:
        raise NodeLost(f"the node is unreachable ({first_line(e)})") from None


def call(ray, refs, name: str, timeout_s: float, what: str):
    """ray.get with a deadline: a node that does not answer is named, never waited on forever."""
    try:
        return ray.get(refs, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise UserError(f"{name} did not answer within {timeout_s:g} s ({what}): check the node "
                        "(ray status), or leave it out") from None
    except ray.exceptions.RayActorError as e:
        raise UserError(f"{name} is gone ({what}): {first_line(e)}") from None
    except ray.exceptions.RayTaskError as e:
        raise UserError(f"{name}: {cause_of(e)}") from None


def cause_of(e) -> str:
    """The node's own error, one line (RayTaskError wraps it with the node's traceback)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, UserError):
        return str(cause)
    if cause is not None:
        return f"{type(cause).__name__}: {first_line(cause)}"
    return first_line(e)


def first_line(e) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    # Ray's own messages start with a header line; the reason is what follows it
    for ln in lines:
        if not ln.startswith(("Traceback", "File ", "ray::", "The actor died because of an error raised")):
            return ln[:300]
    return (lines[0] if lines else type(e).__name__)[:300]


class RemotePost:
    """The head's post-processing: none, the nodes did it; their rows are handed on as they
    are (the engine's prepacked post-processing, post.h make_prepacked)."""

    def __init__(self, max_response_bytes: int):
        self.max_response_bytes = int(max_response_bytes)

    def engine_spec(self):
        return ("prepacked", self.max_response_bytes)

    def output_shapes(self, batch: int, workload):
        return [((batch, 8 + self.max_response_bytes), np.uint8)]


def forward_plan(scenario: str, devices: list[dict], round_trip_s: float) -> tuple[int, int]:
    """(batch forwarded to a node, credits: its batches in flight) for the node's DEVICES.

    Offline: large batches, each filling every card OFFLINE_FILLS times, so the hop's cost is
    spread thin; credits: two, and those in transit during a round trip at the node's peak.
    Server and the streams: one batch for every card of the node at once (the node's cards run
    it side by side, so it takes one card batch's time, no longer), formed under the head's
    timeout; credits: what the node's cards hold at once (each card's own queue of in-flight
    batches already keeps it busy through the hop) and no more, so that a batch never waits
    at one node behind others while another node could start it (p99 is made there), and
    more only if a round trip is longer than a batch."""
    fill = sum(d["batch_size"] for d in devices)
    held = max(1, sum(d["max_in_flight"] for d in devices) // max(1, len(devices)))
    peaks = [d.get("peak_rate") for d in devices]
    rate = float(sum(peaks)) if all(peaks) else None
    if scenario == "Offline":
        batch = OFFLINE_FILLS * fill
        transit = math.ceil(round_trip_s * rate / batch) if rate else 1
        return batch, 2 + transit
    transit = max(0, math.ceil(round_trip_s * rate / fill) - 1) if rate else 0
    return fill, held + transit
