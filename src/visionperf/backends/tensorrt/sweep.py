"""Offline's batch size on a GPU: the size with the best rate of the plan alone."""

from __future__ import annotations


def sweep_batch(make_device, sizes, seconds: float = 1.0, log=print) -> tuple[int, dict[int, float]]:
    """The batch size with the highest raw engine rate (the smallest one within 2% of the best:
    a larger batch only adds latency and memory). MAKE_DEVICE(max size) opens one device, on
    one engine whose profile takes every size, so the sweep costs one engine build."""
    rates: dict[int, float] = {}
    dev = make_device(max(sizes))
    try:
        for b in sizes:
            dev.raw_rate(b, seconds / 4)  # warm-up: first launches at a new shape are slow
            rates[b] = dev.raw_rate(b, seconds)
            log(f"  batch {b:>5}: {rates[b]:,.0f} samples/s (engine alone)")
    finally:
        dev.close()
    best = max(rates.values())
    return min(b for b, r in rates.items() if r >= 0.98 * best), rates
