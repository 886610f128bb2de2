"""visionperf: MLPerf Inference vision benchmarks on the real LoadGen, across many devices."""

__version__ = "0.1.0"
