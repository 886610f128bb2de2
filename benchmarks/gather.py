"""The gather at the memory limit: `--backend null-gather` Offline with int8 ResNet50 rows
(uint8, 150,528 bytes each, as the paper's cards take them), bytes gathered per second,
against a plain copy of the same bytes (the same rows, batches of 8 at random, one copying
thread per device, numpy's take into a preallocated buffer), side by side in one run, repeated.

Also the copy itself (`gather_bench`, built with the engine): glibc's memcpy, which the engine
uses, against non-temporal (streaming) stores, the same rows and batches on the same threads.

    python benchmarks/gather.py [--repeats 3] [--duration 3] [--devices 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from baselines import bare_sut_path, resnet50_fixture, visionperf


def plain_copy(rows: np.ndarray, threads: int, seconds: float, batch: int = 8) -> float:
    """Bytes/s: THREADS threads each copying random batches of ROWS into its own buffer."""
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def work(k: int) -> None:
        rng = np.random.default_rng(k)
        out = np.empty((batch, *rows.shape[1:]), rows.dtype)
        n = 0
        while time.perf_counter() < stop:
            for _ in range(64):
                rows.take(rng.integers(0, len(rows), batch), 0, out, "clip")  # releases the GIL
            n += 64 * batch
        done[k] = n

    t0 = time.perf_counter()
    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return sum(done) * rows[0].nbytes / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--devices", type=int, default=2)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vp-gather-"))
    fx = resnet50_fixture(work, count=1024, int8=True)
    row = 224 * 224 * 3
    rows = np.random.default_rng(0).integers(0, 255, (1024, row), dtype=np.uint8)  # the 154 MB set
    eng, plain, mc, nt = [], [], [], []
    bench = str(bare_sut_path().parent / "gather_bench")
    for r in range(a.repeats):
        res, rec = visionperf("Offline", "null-gather", a.devices, 200_000, a.duration, fx, work)
        eng.append(res.metric * row)
        plain.append(plain_copy(rows, a.devices, a.duration))
        out = subprocess.run([bench, str(row), "1024", "8", str(a.devices), str(a.duration)], check=True,
                             capture_output=True, text=True).stdout.split()
        mc.append(float(out[1]) * 1e9)
        nt.append(float(out[3]) * 1e9)
        print(f"repeat {r + 1}: engine {eng[-1] / 1e9:.2f} GB/s ({res.metric:,.0f} samples/s, "
              f"{rec['host_cpu_us_per_sample']} us CPU/sample), plain copy {plain[-1] / 1e9:.2f} GB/s, "
              f"memcpy {mc[-1] / 1e9:.2f}, streaming {nt[-1] / 1e9:.2f} GB/s", flush=True)
    e, p = statistics.median(eng), statistics.median(plain)
    print(f"\ngather, uint8 ResNet50 rows, {a.devices} devices/threads (median of {a.repeats}):")
    print(f"  engine null-gather {e / 1e9:6.2f} GB/s   plain copy {p / 1e9:6.2f} GB/s   ratio {e / p:.2f}")
    m, n = statistics.median(mc), statistics.median(nt)
    print(f"  copy alone: memcpy {m / 1e9:6.2f} GB/s   streaming stores {n / 1e9:6.2f} GB/s   ratio {n / m:.2f}")


if __name__ == "__main__":
    main()
