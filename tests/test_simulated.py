"""The simulated card: real bytes, accurate timing, real output layouts; replicas; scaling."""

import json
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import visionperf
from visionperf.backends.simulated import SimulatedCard, score_format
from visionperf.placement import Partition
from visionperf.postprocess import make_postprocess
from visionperf.samples import SampleStore
from visionperf.workloads import RESNET50, SSD_MOBILENET, SSD_RESNET34

PART = Partition(0, (0,), (0,), 0)


def card(workload, kind, batch, rate, in_flight=2, dtype="uint8"):
    model = SimpleNamespace(input_dtype=dtype, kind=kind, output_name="ArgMax:0",
                            outputs=("ArgMax:0",) if kind == "classify" else ())
    post = make_postprocess(workload, model, score_format=score_format(workload)) \
        if kind != "classify" else make_postprocess(workload, model)
    return SimulatedCard("c", model, workload, PART, batch, post.output_shapes(batch, workload), rate, in_flight), post


def test_card_time_follows_its_rate_and_queues_batches():
    c, _ = card(RESNET50, "classify", 8, rate=2000.0)  # 4 ms per batch of 8
    x = np.random.default_rng(0).integers(0, 255, (8, 3, 224, 224)).astype(np.uint8)
    c.run(x)
    t = time.perf_counter()
    for _ in range(25):
        c.run(x)
    per_batch = (time.perf_counter() - t) / 25
    # one thread, one batch at a time: the card's 4 ms plus the host's copy and wake-up
    assert 0.004 <= per_batch < 0.0048
    assert c.late_s / c.batches < 0.00025  # each batch ends well under a millisecond late
    # Two batches in flight from two threads share one engine: no faster than its rate.
    t = time.perf_counter()
    threads = [threading.Thread(target=lambda: [c.run(x) for _ in range(10)]) for _ in range(2)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    assert abs((time.perf_counter() - t) - 20 * 0.004) < 0.004
    np.testing.assert_array_equal(c._mem[0, :8], x)  # the bytes really went to the card


def test_submit_returns_at_once_and_collect_waits_for_the_engine():
    c, _ = card(RESNET50, "classify", 8, rate=2000.0)  # 4 ms per batch of 8
    x = np.random.default_rng(1).integers(0, 255, (8, 3, 224, 224)).astype(np.uint8)
    t = time.perf_counter()
    a, b = c.submit(x), c.submit(x[:4])
    assert time.perf_counter() - t < 0.003  # copies only; the engine works on its own time
    assert b.start == a.ready_at  # one engine: the second batch queues behind the first
    assert abs((a.ready_at - a.start) - 0.004) < 1e-9 and abs((b.ready_at - b.start) - 0.002) < 1e-9
    np.testing.assert_array_equal(c._mem[a.slot, :8], x)
    [out] = c.collect(a)
    assert time.perf_counter() >= a.ready_at and out.shape == (8,)
    assert len(c.collect(b)[0]) == 4
    # Holding more than its memory slots is the caller's bug: an error, not a wait forever.
    c.submit(x), c.submit(x)
    with pytest.raises(RuntimeError, match="more than 2 batches"):
        c.submit(x)
    # A batch that cannot be copied in gives its slot back.
    c2, _ = card(RESNET50, "classify", 8, rate=2000.0, in_flight=1)
    with pytest.raises(ValueError):
        c2.submit(np.zeros((8, 3, 224, 225), np.uint8))
    c2.collect(c2.submit(x))


@pytest.mark.parametrize("w, fmt, dtype, shapes", [
    (SSD_RESNET34, "float16", np.float16, [(1, 4, 15130), (1, 81, 15130)]),
    (SSD_MOBILENET, "uint8", np.uint8, [(4, 1917, 4), (4, 1917, 91)]),
])
def test_ssd_outputs_have_the_papers_layout_and_give_nms_real_work(w, fmt, dtype, shapes):
    batch = shapes[0][0]
    c, post = card(w, "raw", batch, rate=1e6, dtype="uint8" if w is SSD_MOBILENET else "float32")
    x = np.zeros((batch, *w.row_shape(w.layout)), c.input_dtype)
    boxes, scores = c.run(x)
    assert [boxes.shape, scores.shape] == shapes and scores.dtype == dtype
    assert post.nms.fmt.dtype == fmt
    data, offsets, sizes = post([boxes, scores], list(range(batch)))
    assert sizes.sum() > 0 and (sizes % 28 == 0).all()  # detections came out of host NMS


def test_each_replica_is_a_separate_buffer_with_the_same_rows():
    src = np.arange(40 * 12, dtype=np.float32).reshape(40, 3, 2, 2)
    store = SampleStore(src, fill_cpus=[(0,), (0,)], replica_of_device=[0, 1])
    store.load([3, 9, 27])
    a, b = store.buffers
    assert a is not b and not np.shares_memory(a, b)
    out0, out1 = np.empty((2, 3, 2, 2), np.float32), np.empty((2, 3, 2, 2), np.float32)
    store.gather(np.array([27, 3]), out0, replica=0)
    store.gather(np.array([27, 3]), out1, replica=1)
    np.testing.assert_array_equal(out0, src[[27, 3]])
    np.testing.assert_array_equal(out1, src[[27, 3]])
    store.unload([3, 9, 27])
    assert all(len(buf) == 0 for buf in store.buffers)


def test_scaling_study_writes_table_json_and_plot(imagenet_dir, slim_model, tmp_path):
    p = visionperf("scale", "resnet50", "--backend", "simulated", "--devices", "1,2", "--scenario", "Offline",
                   "--card-rate", "300", "--duration", "1.5", "--model", slim_model, "--dataset", imagenet_dir,
                   "--cache", tmp_path / "cache", "--out", tmp_path / "study")
    doc = json.loads((tmp_path / "study/scaling.json").read_text())
    pts = doc["points"]
    assert [q["devices"] for q in pts] == [1, 2] and all(q["valid"] for q in pts)
    assert 250 < pts[0]["metric"] < 310 and pts[1]["linear_pct"] > 90
    assert pts[0]["host_cpu_us_per_sample"] > 0
    assert (tmp_path / "study/scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert "% of linear" in p.stdout and "cores for the harness" in p.stdout


def test_simulated_run_prints_the_plan_and_replicates_per_device(imagenet_dir, slim_model, tmp_path):
    p = visionperf("run", "resnet50", "--scenario", "Offline", "--backend", "simulated", "--devices", "2",
                   "--card-rate", "400", "--duration", "1.5", "--model", slim_model, "--dataset", imagenet_dir,
                   "--cache", tmp_path / "cache", "--out", tmp_path / "out")
    assert "buffer replica 1 on node 0" in p.stdout
    rec = json.loads((tmp_path / "out/resnet50/Offline/performance/run_1/run.json").read_text())
    assert rec["host_cpu_us_per_sample"] > 0 and len(rec["plan"]) == 2
