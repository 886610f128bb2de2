import subprocess
import sys
from pathlib import Path

import pytest

from visionperf.datasets.synthetic import make_imagenet
from visionperf.models import build_resnet50


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
