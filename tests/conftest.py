import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from visionperf.datasets.synthetic import make_imagenet
from visionperf.models import build_resnet50

# A suite started from a background job (`make test &`, nohup, CI runners) inherits SIGINT
# ignored, as POSIX shells set it, and every process it starts keeps it ignored through exec, as
# visionperf rightly does too. The interrupt tests need Ctrl-C to mean Ctrl-C: a handler here
# makes SIGINT default again in the processes the tests start (exec resets handled signals).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def imagenet_dir(tmp_path_factory) -> Path:
    return make_imagenet(tmp_path_factory.mktemp("data") / "imagenet", count=48, seed=1)


@pytest.fixture(scope="session")
def slim_model(tmp_path_factory) -> Path:
    """ResNet50 topology at width 1/8: same graph and tensor names, ~60x fewer FLOPs, so a
    Server run on this 2-core machine stays inside the 15 ms bound."""
    return build_resnet50(tmp_path_factory.mktemp("models") / "resnet50_w0125.onnx", width=0.125)


def visionperf(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The real command in a fresh process (LoadGen reads mlperf.conf once per process)."""
    p = subprocess.run([sys.executable, "-m", "visionperf", *map(str, args)],
                       capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"visionperf {' '.join(map(str, args))} failed ({p.returncode}):\n"
                             f"{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="session")
def yolo_assets(tmp_path_factory) -> tuple[Path, Path]:
    """(yolo11n ONNX with a dynamic shape, synthetic weights; a 16-image COCO set whose licences
    the COCO-safe selection keeps 8 of), made once per session."""
    from visionperf.datasets.synthetic import make_coco
    from visionperf.models.yolo11 import build_yolo11

    out = tmp_path_factory.mktemp("yolo-assets")
    return build_yolo11(out / "yolo11n.onnx", "n"), make_coco(out / "coco", 16, 0)


EDGE = ("SingleStream", "MultiStream", "Offline")  # a ResNet50 edge submission's scenarios (round v6.1)
SYSTEM = {"cooling": "air", "host_memory_configuration": "2x 16GB DDR5 4800 MT/s"}  # what a machine cannot tell


@pytest.fixture(scope="session")
def practice_runs(imagenet_dir, slim_model, tmp_path_factory) -> Path:
    """Every run a ResNet50 edge submission needs, short, on the null device (the harness alone)."""
    out = tmp_path_factory.mktemp("practice")
    common = ["--backend", "null", "--model", slim_model, "--dataset", imagenet_dir, "--cache", out / "cache",
              "--out", out / "runs"]
    for s in EDGE:
        # Offline at a set target: its query's size (1.1 x 8,000/s x 0.3 s, under the rules'
        # 24,576) must not hang on how fast a warm-up of the null device happens to be here
        qps = ["--target-qps", "8000"] if s == "Offline" else []
        visionperf("run", "resnet50", "--scenario", s, "--duration", "0.3", *qps, *common)
        visionperf("run", "resnet50", "--scenario", s, "--mode", "accuracy", *common)
        for t in ("TEST01", "TEST04"):
            visionperf("run", "resnet50", "--scenario", s, "--duration", "0.3", "--compliance", t, *qps, *common)
    (out / "system.json").write_text(json.dumps(SYSTEM))
    return out



PLUGIN_SOURCES = Path(__file__).parent / "plugins"
DEVICE_INCLUDE = Path(__file__).parents[1] / "src/visionperf/include"  # visionperf/device.h


@pytest.fixture(scope="session")
def build_plugin(tmp_path_factory):
    """build_plugin(source="echo_device.c", *flags) -> the path of a shared library compiled
    from tests/plugins/SOURCE against visionperf/device.h alone (cached per session)."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH: the plug-in tests build a device from C")
    out = tmp_path_factory.mktemp("plugins")
    built: dict = {}

    def build(source: str = "echo_device.c", *flags: str) -> Path:
        key = (source, flags)
        if key not in built:
            lib = out / f"lib{Path(source).stem}{len(built)}.so"
            # -Wno-missing-field-initializers: a version 1 table (echo_device.c, unchanged) leaves
            # the version 2 fields out, and C zeroes them, as the ABI means it to
            p = subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers",
                                "-shared", "-fPIC", "-O2", "-I", str(DEVICE_INCLUDE), *flags, str(PLUGIN_SOURCES / source), "-o", str(lib)],
                               capture_output=True, text=True, timeout=120)
            if p.returncode != 0:
                raise AssertionError(f"{cc} could not build {source} {' '.join(flags)}:\n{p.stderr}")
            built[key] = lib
        return built[key]

    return build


@pytest.fixture(scope="session")
def echo_plugin(build_plugin) -> Path:
    """tests/plugins/echo_device.c: an asynchronous device answering each row's label (ABI 1)."""
    return build_plugin("echo_device.c")


@pytest.fixture(scope="session")
def fetch_plugin(build_plugin) -> Path:
    """tests/plugins/fetch_device.c: the same labels from a device that fetches its own rows (ABI 2)."""
    return build_plugin("fetch_device.c")
