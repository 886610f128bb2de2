"""A bare LoadGen Server run: the SUT completes every query inside the issue callback.

The ceiling any Python harness can reach on this machine (no queue, no thread, no batch).
Usage: python bare_sut.py QPS DURATION_S OUTDIR   (prints VALID|INVALID and the metric)
"""

import sys
import tempfile
from pathlib import Path

import mlperf_loadgen as lg
import numpy as np

from visionperf.results import read_result


def main(qps: float, duration_s: float, out: str) -> None:
    label = np.zeros(1, np.float32)
    ptr = label.ctypes.data
    QSR = lg.QuerySampleResponse

    def issue(ids, indices):
        lg.QuerySamplesComplete([QSR(i, ptr, 4) for i in ids])

    conf = Path(tempfile.mkdtemp()) / "user.conf"
    conf.write_text(f"resnet50.Server.target_qps = {qps}\nresnet50.Server.min_duration = {int(duration_s * 1000)}\n")
    s = lg.TestSettings()
    s.FromConfig(str(conf), "resnet50", "Server")
    s.scenario = lg.TestScenario.Server
    s.mode = lg.TestMode.PerformanceOnly
    log = lg.LogSettings()
    Path(out).mkdir(parents=True, exist_ok=True)
    log.log_output.outdir = out
    log.log_output.copy_summary_to_stdout = False
    sut = lg.ConstructFastSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(1024, 1024, lambda s: None, lambda s: None)
    lg.StartTestWithLogSettings(sut, qsl, s, log, str(Path(out) / "audit.config"))
    lg.DestroyQSL(qsl)
    lg.DestroyFastSUT(sut)
    r = read_result(out, "Server")
    print("VALID" if r.valid else "INVALID", r.metric)


if __name__ == "__main__":
    main(float(sys.argv[1]), float(sys.argv[2]), sys.argv[3])
