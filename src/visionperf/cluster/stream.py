"""The stream that carries a cluster run's forwarded batches, driver to node and back, on ZeroMQ
(pyzmq): opened when the session starts (the node binds, Ray tells the driver where), closed
with it. Ray still places, starts, loads and watches the nodes; only the batches travel here,
because a Ray actor call costs 0.3-0.5 ms of CPU at each end and this costs tens of us
(benchmarks/cluster_scaling.py). ZeroMQ rather than a socket of our own: whole messages (no
framing code, no half reads), its own I/O thread, heartbeats and a monitor that reports a
dropped connection, and pyzmq's send and recv release the GIL.

Two one-way TCP connections per node (a ZeroMQ socket is used by one thread at a time): the
node's PULL takes batches from the driver's PUSH, the node's PUSH sends answers to the
driver's PULL. Every message is two frames, [header | body]; the header is 24 bytes,
little-endian: magic b"VPS1", kind (u8), 3 pad bytes, seq (u64), count (u32), body bytes (u32).

    BATCH  driver -> node   body: COUNT int64 cache indices                      seq: the driver's
    ANSWER node -> driver   body: COUNT rows of [8-byte size | response] (the node's serve)
    ERROR  node -> driver   body: one line, utf-8; seq 0: the stream itself (a malformed batch)
    PING / PONG             empty: the round trip timed at the start, and the address checked

Both ends check every message (frame count, magic, kind, sizes) and treat anything else as the
stream's failure: the run ends with one line. ZeroMQ delivers a message whole or not at all,
so a connection cut mid-message is a disconnection (seen by the driver's socket monitor), never
half a batch.
"""

from __future__ import annotations

import os
import queue
import struct
import threading
import time

import numpy as np

from ..errors import UserError

HEADER = struct.Struct("<4sB3xQII")
MAGIC = b"VPS1"
BATCH, ANSWER, ERROR, PING, PONG = 1, 2, 3, 4, 5
KIND_NAMES = {BATCH: "batch", ANSWER: "answer", ERROR: "error", PING: "ping", PONG: "pong"}
MAX_COUNT = 1 << 24  # samples in one message: far above any batch, below anything that overflows
MAX_ERROR_BYTES = 4096

PORTS_ENV = "VISIONPERF_STREAM_PORTS"
DEFAULT_PORTS = (46000, 46999)  # each node binds two of them per run
BIND_TRIES = 200
ZERO_COPY_BYTES = 65536  # smaller frames are copied: cheaper than tracking a buffer (pyzmq's own threshold)
SEND_TIMEOUT_MS = 5000  # a node's answer to a driver that is gone is dropped, not waited on forever
HEARTBEAT_IVL_MS = 2000  # ZMTP heartbeats: a peer whose machine vanished (no reset) is a disconnection ...
HEARTBEAT_TIMEOUT_MS = 30000  # ... after this long: longer than the engine's watchdog, which fails a stalled node
CLOSE_WAIT_S = 5.0


class Malformed(Exception):
    """A message that does not follow the layout above (the reason is the message)."""


def port_range(text: str | None = None) -> tuple[int, int]:
    """VISIONPERF_STREAM_PORTS (lo-hi), or the default range; one line if it is not a range."""
    text = os.environ.get(PORTS_ENV, "") if text is None else text
    if not text.strip():
        return DEFAULT_PORTS
    lo, sep, hi = text.strip().partition("-")
    if not (sep and lo.isdigit() and hi.isdigit() and 1024 <= int(lo) <= int(hi) <= 65535):
        raise UserError(f"{PORTS_ENV}={text}: give the ports a node may bind its stream to as lo-hi, within "
                        f"1024-65535 (e.g. {DEFAULT_PORTS[0]}-{DEFAULT_PORTS[1]}, the default)")
    return int(lo), int(hi)


def header(kind: int, seq: int, count: int, body_bytes: int) -> bytes:
    return HEADER.pack(MAGIC, kind, seq, count, body_bytes)


def error_body(text: str) -> bytes:
    return " ".join(str(text).split()).encode("utf-8", "replace")[:MAX_ERROR_BYTES]


def read(sock, kinds: tuple[int, ...]):
    """One whole message from SOCK: (kind, seq, count, body), body bytes, or a zmq.Frame for a
    large one (no copy). Malformed if it is not [header | body] as laid out above, or not one
    of KINDS; the rest of a message with too many frames is read and dropped."""
    import zmq

    head = sock.recv()
    if not sock.getsockopt(zmq.RCVMORE):
        raise Malformed(f"a message of one frame ({len(head)} bytes), not [header | body]")
    if len(head) != HEADER.size:
        _drain(sock)
        raise Malformed(f"a header of {len(head)} bytes, not {HEADER.size}")
    magic, kind, seq, count, size = HEADER.unpack(head)
    if magic != MAGIC:
        _drain(sock)
        raise Malformed(f"a header that does not start with {MAGIC!r} ({magic!r}): another program's message")
    if kind not in kinds:
        _drain(sock)
        raise Malformed(f"a message of kind {KIND_NAMES.get(kind, kind)} where "
                        + " or ".join(KIND_NAMES[k] for k in kinds) + " belongs")
    body = sock.recv(copy=size < ZERO_COPY_BYTES)
    if sock.getsockopt(zmq.RCVMORE):
        _drain(sock)
        raise Malformed(f"a {KIND_NAMES[kind]} of more than two frames")
    if len(body) != size:
        raise Malformed(f"a {KIND_NAMES[kind]} whose body is {len(body)} bytes, its header says {size}")
    if count > MAX_COUNT:
        raise Malformed(f"a {KIND_NAMES[kind]} of {count} samples")
    if kind == BATCH and size != 8 * count:
        raise Malformed(f"a batch of {count} samples in {size} bytes, not {8 * count}")
    if kind in (PING, PONG, ERROR) and count:
        raise Malformed(f"a {KIND_NAMES[kind]} that counts {count} samples")
    if kind == ERROR and size > MAX_ERROR_BYTES:
        raise Malformed(f"an error of {size} bytes")
    return kind, seq, count, (body if isinstance(body, bytes) else body.buffer)


def _drain(sock) -> None:
    import zmq

    while sock.getsockopt(zmq.RCVMORE):
        sock.recv()


def _endpoint(ip: str) -> str:
    return f"tcp://[{ip}]" if ":" in ip else f"tcp://{ip}"


def _term(ctx, what: str) -> None:
    """CTX terminated: threads blocked in its sockets get ETERM and close them. Waited for a
    while only: cleanup never hangs a run's end."""
    t = threading.Thread(target=ctx.term, name=f"visionperf close {what}", daemon=True)
    t.start()
    t.join(CLOSE_WAIT_S)


# -- the node's end ----------------------------------------------------------------------------

class NodeStream:
    """A node's end: a receiver thread (PULL) hands each batch to worker threads that run SERVE
    (the node's engine; it releases the GIL while the cards work) and send its answer (PUSH,
    one sender at a time under a lock: ZeroMQ sockets may change threads behind a full memory
    barrier, and a sender thread would cost a thread wake-up per batch). Workers are started as
    batches arrive, one more whenever every one is busy, up to MAX_WORKERS: as many as the
    batches the driver holds at this node at once (its credits), no more."""

    def __init__(self, serve, ip: str, ports: tuple[int, int], max_workers: int, name: str = "node"):
        import zmq

        self._serve, self.name, self._max = serve, name, int(max_workers)
        self._ctx = zmq.Context(io_threads=1)
        self._pull = self._ctx.socket(zmq.PULL)
        self._push = self._ctx.socket(zmq.PUSH)
        try:
            addrs = []
            for s in (self._pull, self._push):
                s.setsockopt(zmq.LINGER, 0)
                if ":" in ip:
                    s.setsockopt(zmq.IPV6, 1)
                port = s.bind_to_random_port(_endpoint(ip), ports[0], ports[1] + 1, BIND_TRIES)
                addrs.append(f"{_endpoint(ip)}:{port}")
        except zmq.ZMQError as e:
            self._pull.close(0)
            self._push.close(0)
            self._ctx.term()
            raise UserError(f"{name} cannot bind its stream on {ip}, ports {ports[0]}-{ports[1]} ({e}): set "
                            f"{PORTS_ENV}=lo-hi to a range free there") from None
        self._push.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        self.addresses = addrs  # [batches in, answers out]
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._busy = 0
        self.batches = 0  # batches received (the run's record: every forwarded batch came this way)
        self._workers: list[threading.Thread] = []
        self.closed = threading.Event()
        self._receiver = threading.Thread(target=self._receive, name=f"visionperf {name} in", daemon=True)
        self._receiver.start()

    def send(self, frames: list) -> None:
        """One whole message to the driver (dropped if the driver is gone or the stream closed:
        nobody waits for it then)."""
        import zmq

        with self._send_lock:
            if self.closed.is_set():
                return
            try:
                for frame in frames[:-1]:
                    self._push.send(frame, zmq.SNDMORE)
                self._push.send(frames[-1], copy=len(frames[-1]) < ZERO_COPY_BYTES)
            except zmq.ZMQError:  # Again: no driver to take it; ETERM: the stream is closing
                pass

    def _receive(self) -> None:
        import zmq

        try:
            while True:
                try:
                    kind, seq, count, body = read(self._pull, (BATCH, PING))
                except Malformed as e:  # the driver ends the run on this; the node takes nothing from it
                    text = error_body(f"the node received a malformed message: {e}")
                    self.send([header(ERROR, 0, 0, len(text)), text])
                    continue
                if kind == PING:
                    self.send([header(PONG, seq, 0, 0), b""])
                    continue
                self.batches += 1
                with self._lock:
                    self._busy += 1
                    hire = self._busy > len(self._workers) and len(self._workers) < self._max
                    if hire:
                        t = threading.Thread(target=self._work, name=f"visionperf {self.name} serve", daemon=True)
                        self._workers.append(t)
                if hire:
                    t.start()
                self._jobs.put((seq, count, body))
        except zmq.ContextTerminated:
            pass
        finally:
            self._pull.close(0)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            seq, count, body = job
            try:
                rows = self._serve(body)
                msg = [header(ANSWER, seq, count, len(rows)), rows]
            except BaseException as e:  # noqa: BLE001 (the batch's error goes to the driver, which ends the run)
                text = error_body(reason(e))
                msg = [header(ERROR, seq, 0, len(text)), text]
            with self._lock:
                self._busy -= 1
            self.send(msg)

    def close(self) -> None:
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
            for _ in self._workers:
                self._jobs.put(None)
        term = threading.Thread(target=self._ctx.term, name=f"visionperf close {self.name}", daemon=True)
        term.start()
        # a worker blocked sending to a driver that is gone gets ETERM from term and lets go
        if self._send_lock.acquire(timeout=CLOSE_WAIT_S):
            try:
                self._push.close(0)
            finally:
                self._send_lock.release()
        term.join(CLOSE_WAIT_S)


def reason(e: BaseException) -> str:
    """A node's error as one line: a UserError's own words, else its type and first line."""
    if isinstance(e, UserError):
        return str(e)
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")


# -- the driver's end --------------------------------------------------------------------------

class HeadStream:
    """The driver's end of one node's stream: its PUSH (batches out, sent by the engine's
    driver thread), its PULL (answers in, read by a thread of its own once started) and a
    guard thread on both sockets' monitors, which reports a connection that drops (the node's
    process or machine gone, the network cut). NAME is the node's, for messages."""

    def __init__(self, name: str, addresses: list[str]):
        import zmq

        if (not isinstance(addresses, (list, tuple)) or len(addresses) != 2
                or not all(isinstance(a, str) and a.startswith("tcp://") for a in addresses)):
            raise UserError(f"{name} gave no stream address ({addresses!r}): run the same visionperf on the "
                            "driver and every node")
        self.name, self.addresses = name, list(addresses)
        self._ctx = zmq.Context(io_threads=1)
        self._push = self._ctx.socket(zmq.PUSH)
        self._pull = self._ctx.socket(zmq.PULL)
        self._monitors = []
        for s in (self._push, self._pull):
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
            s.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
            s.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
            s.setsockopt(zmq.IPV6, 1)
            self._monitors.append(s.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL))
        self._push.setsockopt(zmq.SNDTIMEO, 0)  # credits bound what is queued: a full queue is a stuck stream
        self._push.connect(addresses[0])
        self._pull.connect(addresses[1])
        self._send_lock = threading.Lock()
        self._closed = False
        self._threads: list[threading.Thread] = []

    # -- before the run: the round trip, and whether the node answers at all ------------------
    def round_trip(self, pings: int, timeout_s: float) -> float:
        """The median of PINGS round trips (after 3 that warm the connection); one line if the
        node does not answer within TIMEOUT_S (a firewall, or an address the driver cannot reach)."""
        import zmq

        times = []
        for k in range(3 + pings):
            t0 = time.perf_counter()
            with self._send_lock:
                self._push.send_multipart([header(PING, k + 1, 0, 0), b""], copy=True)
            if not self._pull.poll(int(timeout_s * 1000)):
                lo, hi = port_range()
                raise UserError(f"{self.name}'s stream at {self.addresses[0]} did not answer within {timeout_s:g} s: "
                                f"let the driver reach ports {lo}-{hi} on every node ({PORTS_ENV}=lo-hi sets them)")
            try:
                kind, seq, _, _ = read(self._pull, (PONG,))
            except Malformed as e:
                raise UserError(f"{self.name}'s stream answered a ping with {e}: run the same visionperf on the "
                                "driver and every node") from None
            if seq != k + 1:
                raise UserError(f"{self.name}'s stream answered ping {k + 1} as {seq}")
            if k >= 3:
                times.append(time.perf_counter() - t0)
        return float(np.median(times))

    # -- the run ----------------------------------------------------------------------------
    def start(self, on_message, on_fault) -> None:
        """From now on every answer goes to ON_MESSAGE(kind, seq, count, body) on the receiver
        thread, and the stream's own failures to ON_FAULT(kind, text): "malformed" (a message
        that breaks the layout) or "cut" (a connection dropped)."""
        self._on_message, self._on_fault = on_message, on_fault
        self._threads = [threading.Thread(target=self._receive, name=f"visionperf {self.name} in", daemon=True),
                         threading.Thread(target=self._guard, name=f"visionperf {self.name} guard", daemon=True)]
        for t in self._threads:
            t.start()

    def send_batch(self, seq: int, indices: np.ndarray) -> None:
        """Raises zmq.ZMQError (zmq.Again: the node's queue is full) for the caller to name."""
        import zmq

        body = indices.tobytes()
        with self._send_lock:
            self._push.send(header(BATCH, seq, len(indices), len(body)), zmq.SNDMORE)
            self._push.send(body, copy=len(body) < ZERO_COPY_BYTES)

    def _receive(self) -> None:
        import zmq

        try:
            while True:
                try:
                    msg = read(self._pull, (ANSWER, ERROR))
                except Malformed as e:
                    self._on_fault("malformed", str(e))
                    continue
                self._on_message(*msg)
        except zmq.ContextTerminated:
            pass
        finally:
            self._pull.close(0)

    def _guard(self) -> None:
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        poller = zmq.Poller()
        for m in self._monitors:
            poller.register(m, zmq.POLLIN)
        try:
            while True:
                for m, _ in poller.poll():
                    event = recv_monitor_message(m)
                    if self._closed:  # our own close
                        continue
                    if event["event"] == zmq.EVENT_DISCONNECTED:
                        self._on_fault("cut", "the connection dropped")
                    else:
                        self._on_fault("cut", "the connection's handshake failed (another program on that port?)")
        except zmq.ContextTerminated:
            pass
        finally:
            for m in self._monitors:
                m.close(0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._send_lock:
            self._push.close(0)
        if not self._threads:  # never started: its own sockets only
            self._pull.close(0)
            for m in self._monitors:
                m.close(0)
        _term(self._ctx, self.name)
