"""The head's side of a cluster run: each node as one asynchronous device of the head's engine
(RemoteNode), the responses handed on as the nodes packed them (RemotePost), and how large a
batch each node is sent and how many it holds (forward_plan)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError

OFFLINE_FILLS = 4  # an Offline forwarded batch fills each card of its node this many times
CALL_TIMEOUT_S = 30.0  # small calls: statistics, unload, a round trip
AIM_EARLY_NS = 200_000  # the engine looks for an answer this long before it is expected
BIAS_STEP_NS = 5_000_000  # the most one answer moves the estimate (before the moving average's 1/8)
MAX_BIAS_NS = 50_000_000


class NodeLost(Exception):
    """A node's actor or machine is gone (its process died, or the node left the cluster)."""


class NodeFailed(Exception):
    """A node answered a batch with an error of its own (a device failed there)."""


@dataclass
class _Ticket:
    ref: object
    ready_ns: int  # when it is expected back (the engine looks then)
    submitted_ns: int
    rows: int
    done: threading.Event = field(default_factory=threading.Event)
    answer: bytes | None = None
    error: BaseException | None = None
    done_ns: int = 0


class RemoteNode:
    """One node, as the head's engine sees it: an asynchronous device (backends.AsyncDevice)
    that takes a batch's cache indices (reads_input is False: the head gathers nothing) and
    returns the node's responses as one output of prepacked rows.

    Answers are awaited by a thread of this node's own, oldest first (the order the engine
    collects them), blocked in Ray's wait with the GIL released; collect only looks at what it
    found. So a batch the engine looks for a little early costs a check of an event, not a
    Ray call: collect waits up to WAIT_SLICE_S for it (an event wait, no CPU) rather than
    return at once and have the engine ask again 20 us later through Python. The driver thread
    (the engine's) that it holds serves this node alone.

    ready_ns is the node's pace: one round trip plus the batch's own service time at the node's
    peak rate after it is sent, and never before the batch ahead of it plus its service time;
    a node without a declared peak is paced by its answers' moving average."""

    fixed_batch = False
    reads_input = False
    input_shape = (1,)
    input_dtype = np.dtype(np.uint8)
    numa_node = None

    def __init__(self, name: str, actor, batch_size: int, credits: int, row_bytes: int, round_trip_s: float,
                 peak_rate: float | None, wait_slice_s: float, cpus: tuple[int, ...] = ()):
        self.name, self.actor, self.cpus = name, actor, tuple(cpus)
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
        self._out: deque[_Ticket] = deque()  # sent, not yet answered, oldest first
        self._cv = threading.Condition()
        self._closed = False
        self._waiter = threading.Thread(target=self._await_answers, name=f"visionperf {name}", daemon=True)
        self._waiter.start()

    def submit(self, batch, indices) -> _Ticket:
        n = len(indices)
        ref = self.actor.run.remote(np.asarray(indices, np.int64).tobytes())  # bytes: the cheapest to pickle
        now = time.monotonic_ns()
        if self._per_sample_ns:
            service = int(n * self._per_sample_ns)
            ready = max(now + self._rtt_ns + service, self._last_ready + service)
        else:
            ready = now + int(0.8 * self._latency_ns) if self._latency_ns else now + self._rtt_ns
        self._last_ready = ready
        # never before the batch ahead of it: the engine collects them in order
        self._last_told = max(ready + int(self._bias_ns), self._last_told)
        t = _Ticket(ref, self._last_told, now, n)
        with self._cv:
            self._out.append(t)
            self._cv.notify()
        return t

    def _await_answers(self) -> None:
        """This node's answers, oldest first: each ticket's bytes (or error) and arrival time."""
        import ray

        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._out or self._closed)
                if self._closed:
                    return
                t = self._out[0]
            try:
                t.answer = _result(ray, t.ref, 0.1)  # waits with the GIL released
            except TimeoutError:
                continue
            except BaseException as e:  # noqa: BLE001 (handed to collect, which raises it for the engine)
                t.error = e
            t.done_ns = time.monotonic_ns()
            with self._cv:
                self._out.popleft()
                behind = len(self._out)
            if self._per_sample_ns:  # behind its peak pace: the batches still out end later than guessed
                self._last_ready = max(self._last_ready, t.done_ns + int(behind * self.batch_size * self._per_sample_ns))
            # after the engine was told to look (>0) or before; a stall (a machine swapping, a
            # node paused) moves the estimate by a bounded step only
            late = min(max(t.done_ns - t.ready_ns, -BIAS_STEP_NS), BIAS_STEP_NS)
            self._bias_ns = min(max(self._bias_ns + (late - AIM_EARLY_NS) / 8, -float(self._rtt_ns)), MAX_BIAS_NS)
            took = t.done_ns - t.submitted_ns
            self._latency_ns = took if not self._latency_ns else self._latency_ns + (took - self._latency_ns) / 8
            t.done.set()

    def collect(self, ticket: _Ticket, timeout_s: float | None):
        wait = None if timeout_s is None else max(float(timeout_s), self.wait_slice_s)
        if not ticket.done.wait(wait):
            return None
        if ticket.error is not None:
            raise ticket.error
        out = np.frombuffer(ticket.answer, np.uint8)
        ticket.answer = None
        if out.size != ticket.rows * self.row_bytes:
            raise NodeFailed(f"answered {out.size} bytes for {ticket.rows} samples, expected "
                             f"{ticket.rows * self.row_bytes}: the node runs another post-processing")
        return [out.reshape(ticket.rows, self.row_bytes)]

    def reset_stats(self) -> None:
        import ray

        call(ray, self.actor.reset_stats.remote(), self.name, CALL_TIMEOUT_S, "resetting its counters")

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()


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
