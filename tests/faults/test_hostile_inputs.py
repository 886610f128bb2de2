"""Issue 23, items 5-7: inputs a new user could hand over, each refused in one line (exit 2,
nothing half-written, no survivor, bounded time) or, for a JPEG with a corrupt scan, decoded as the
reference decodes it with the file named."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from conftest import visionperf
from hostile import held_preprocess, open_gate, refused
from injection import half_written

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked


def _records(data_hex: str, n: int = 3) -> str:
    return json.dumps([{"seq_id": i, "qsl_idx": i, "data": data_hex} for i in range(n)])


# -- accuracy logs of another workload -------------------------------------------------------------

def test_accuracy_resnet50_on_a_detection_log(imagenet_dir, tmp_path):
    log = tmp_path / "mlperf_log_accuracy.json"
    # what SSD-MobileNet writes for qsl_idx 0: detections of 7 float32 each
    log.write_text(_records(np.asarray([0, 0.1, 0.1, 0.5, 0.5, 0.9, 3] * 2, np.float32).tobytes().hex()))
    line = refused("accuracy", "resnet50", "--log", log, "--dataset", imagenet_dir)
    assert str(log) in line and "wrong workload" in line
    assert not (tmp_path / "accuracy.txt").exists()


def test_accuracy_detection_on_a_log_of_other_images(tmp_path):
    from visionperf.datasets.synthetic import make_coco

    coco = make_coco(tmp_path / "coco", count=4, seed=1)
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps([{"seq_id": 0, "qsl_idx": 1,  # detections that say they are for image 3
                                "data": np.asarray([3, 0.1, 0.1, 0.5, 0.5, 0.9, 3], np.float32).tobytes().hex()}]))
    line = refused("accuracy", "ssd-mobilenet", "--log", log, "--dataset", coco)
    assert str(log) in line and "wrong workload" in line


# -- topology --sysfs-root -------------------------------------------------------------------------

def _sysfs(root, online="0-1", cpulist="0-1", package="0"):
    cpu = root / "sys/devices/system/cpu"
    for c in (0, 1):
        (cpu / f"cpu{c}/topology").mkdir(parents=True)
        (cpu / f"cpu{c}/topology/physical_package_id").write_text(package + "\n")
    (cpu / "online").write_text(online + "\n")
    (root / "sys/devices/system/node/node0").mkdir(parents=True)
    (root / "sys/devices/system/node/node0/cpulist").write_text(cpulist + "\n")
    return root


@pytest.mark.parametrize("where", ["missing", "file", "empty"])
def test_topology_root_that_is_no_sysfs_tree(where, tmp_path):
    root = tmp_path / "root"
    if where == "file":
        root.write_text("not a tree")
    elif where == "empty":
        root.mkdir()
    line = refused("topology", "--sysfs-root", root)
    assert f"--sysfs-root {root}" in line


@pytest.mark.parametrize("damage", [dict(online="zero-one"), dict(online="0-99999999999"), dict(cpulist="0-1,x"),
                                    dict(package="first")], ids=["online", "huge-range", "cpulist", "package"])
def test_topology_malformed_tree(damage, tmp_path):
    root = _sysfs(tmp_path / "root", **damage)
    line = refused("topology", "--sysfs-root", root)
    assert str(root / "sys/devices/system") in line and "is this a sysfs tree?" in line


def test_topology_good_tree(tmp_path):
    out = visionperf("topology", "--sysfs-root", _sysfs(tmp_path / "root")).stdout
    assert "physical cores 2" in out


# -- empty caches, quantisation scales, corrupt scans ---------------------------------------------

@pytest.fixture
def all_bad(imagenet_dir, tmp_path):
    d = tmp_path / "bad"
    shutil.copytree(imagenet_dir, d)
    for f in d.glob("*.JPEG"):
        f.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg \xff\xd9")
    return d


def test_preprocess_skip_bad_with_every_image_bad(all_bad, tmp_path):
    out = tmp_path / "cache"
    line = refused("preprocess", "resnet50", "--dataset", all_bad, "--out", out, "--count", "8", "--skip-bad",
                   "--workers", "1")
    assert "every one of the 8 images is bad" in line and "ILSVRC2012_val_00000001.JPEG" in line
    assert not (out / "manifest.json").exists() and not (out / "data.npy").exists()
    assert not half_written(tmp_path)


def test_run_on_a_cache_without_rows(imagenet_dir, slim_model, tmp_path):
    cache = tmp_path / "cache"
    visionperf("preprocess", "resnet50", "--dataset", imagenet_dir, "--out", cache, "--count", "2", "--workers", "1")
    m = json.loads((cache / "manifest.json").read_text())  # as an older visionperf published it
    m["skipped"] = [[0, "ILSVRC2012_val_00000001.JPEG", "bad"], [1, "ILSVRC2012_val_00000002.JPEG", "bad"]]
    m.pop("data_fingerprint")
    np.save(cache / "data.npy", np.zeros((0, 3, 224, 224), np.float32))
    (cache / "manifest.json").write_text(json.dumps(m))
    line = refused("run", "resnet50", "--scenario", "Offline", "--backend", "null", "--model", slim_model,
                   "--dataset", imagenet_dir, "--count", "2", "--cache", cache, "--out", tmp_path / "runs",
                   "--duration", "0.1")
    assert f"cache {cache} holds no rows" in line
    assert not half_written(tmp_path)


@pytest.mark.parametrize("scale", ["1e-300", "1e-40", "1e-37"])
def test_preprocess_scale_that_saturates_every_pixel(scale, imagenet_dir, tmp_path):
    out = tmp_path / "cache"
    line = refused("preprocess", "resnet50", "--dataset", imagenet_dir, "--out", out, "--dtype", "int8",
                   "--scale", scale, "--zero-point", "0")
    assert "scale" in line and scale in line
    assert not out.exists()


def _corrupt_scan(jpeg: bytes) -> bytes:
    """JPEG bytes whose entropy-coded data holds a stray marker (the end marker kept): libjpeg
    decodes it with a warning."""
    data = bytearray(jpeg)
    sos = data.index(b"\xff\xda")
    data[len(data) - 40:len(data) - 36] = b"\xff\xd3\x00\x00"
    assert sos < len(data) - 40 and data.endswith(b"\xff\xd9")
    return bytes(data)


def test_jpeg_with_a_corrupt_scan_is_decoded_and_named(imagenet_dir, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(imagenet_dir, d)
    victim = d / "ILSVRC2012_val_00000002.JPEG"
    victim.write_bytes(_corrupt_scan(victim.read_bytes()))
    reference = cv2.imread(str(victim), cv2.IMREAD_COLOR)  # the reference's decoder
    assert reference is not None
    p = visionperf("preprocess", "resnet50", "--dataset", d, "--out", tmp_path / "cache", "--count", "3",
                   "--workers", "1")
    warned = [ln for ln in p.stderr.splitlines() if "Corrupt JPEG" in ln or "JPEG" in ln and "warning" in ln]
    assert warned and all(str(victim) in ln for ln in warned), p.stderr
    from visionperf.datasets.imagenet import decode_bgr

    assert np.array_equal(decode_bgr(victim), reference)


# -- a run's cache inside a cache being built -------------------------------------------------------

def test_run_cache_while_preprocess_builds_it(imagenet_dir, slim_model, tmp_path):
    cache = tmp_path / "cache"
    build = ["preprocess", "resnet50", "--dataset", imagenet_dir, "--out", cache, "--workers", "1"]
    first, fifo = held_preprocess(build, tmp_path)
    gate = None
    try:
        gate = open_gate(fifo, first)
        line = refused("run", "resnet50", "--scenario", "Offline", "--backend", "null", "--model", slim_model,
                       "--dataset", imagenet_dir, "--cache", cache, "--out", tmp_path / "runs", "--duration", "0.1")
        assert "being built" in line and str(cache) in line
        assert sorted(p.name for p in cache.iterdir()) == [".visionperf.lock", "build"]  # no second cache inside
    finally:
        if gate is not None:
            os.close(gate)
        first.communicate(timeout=120)
    assert first.returncode == 0
    assert not any(p.is_dir() and p.name.startswith("resnet50-") for p in cache.iterdir())


# -- user.conf values ----------------------------------------------------------------------------

USER_CONFS = {
    "target_qps nan": ("Server", "resnet50.Server.target_qps = nan", "a finite number above 0"),
    "target_qps negative": ("Offline", "*.Offline.target_qps = -100", "a finite number above 0"),
    "target_qps zero": ("Server", "resnet50.Server.target_qps = 0", "a finite number above 0"),
    "min_duration negative": ("Offline", "*.*.min_duration = -5", "a finite number of at least 0"),
    "samples_per_query zero": ("MultiStream", "resnet50.MultiStream.samples_per_query = 0",
                               "a finite number of at least 1"),
}


@pytest.mark.parametrize("case", USER_CONFS)
def test_user_conf_values(case, imagenet_dir, slim_model, tmp_path):
    scenario, line, says = USER_CONFS[case]
    conf = tmp_path / "user.conf"
    conf.write_text(f"# mine\n*.*.min_query_count = 1\n{line}\n")
    out = tmp_path / "runs"
    err = refused("run", "resnet50", "--scenario", scenario, "--backend", "null", "--model", slim_model,
                  "--dataset", imagenet_dir, "--cache", tmp_path / "cache", "--out", out, "--user-conf", conf)
    assert f"{conf}:3: {line.split(' =')[0]}" in err and says in err
    assert not out.exists() and not half_written(tmp_path)


# -- non-UTF-8 bytes in the arguments ----------------------------------------------------------------

def test_non_utf8_bytes_in_arguments_reach_the_lock_file(imagenet_dir, tmp_path):
    import subprocess
    import sys

    out = os.fsencode(tmp_path) + b"/x\xff"
    p = subprocess.run([sys.executable, "-m", "visionperf", "preprocess", "resnet50", "--dataset", str(imagenet_dir),
                        "--count", "2", "--workers", "1", "--out", os.fsdecode(out)],
                       capture_output=True, timeout=120)
    assert p.returncode == 0 and b"Traceback" not in p.stderr, p.stderr
    assert os.path.exists(out + b"/manifest.json") and not half_written(tmp_path)


def test_the_lock_file_records_non_utf8_arguments(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from visionperf.locks import DirLock, holder; d = sys.argv[1]; "
            "l = DirLock(d).acquire(); print(holder(d)); l.release()")
    arg = os.fsdecode(b"caf\xe9")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d"), arg], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert "caf" in p.stdout and not (tmp_path / "d").exists()


# -- report on damaged runs ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_run(imagenet_dir, slim_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    visionperf("run", "resnet50", "--scenario", "Offline", "--backend", "null", "--model", slim_model,
               "--dataset", imagenet_dir, "--cache", out / "cache", "--out", out / "runs", "--duration", "0.1")
    return out / "runs"


def _report(runs) -> str:
    p = visionperf("report", runs, "--quiet", "--plots", runs.parent / "plots")
    return " ".join(p.stdout.split())  # the table wraps long paths: compare without the breaks


@pytest.mark.parametrize("garbage", ["{not json", "[]", '{"config": {"backend": ["x"], "devices": 1}}', "[" * 100_000])
def test_report_names_a_damaged_run_json(garbage, one_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(one_run, runs)
    rec = runs / "resnet50/Offline/performance/run_1/run.json"
    rec.write_text(garbage)
    shown = _report(runs)
    assert "damaged:" in shown and "run.json is damaged" in shown
    assert "run_1/run.json" in shown.replace(" ", "")


def test_report_names_a_truncated_detail_log(one_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(one_run, runs)
    detail = runs / "resnet50/Offline/performance/run_1/mlperf_log_detail.txt"
    detail.write_bytes(detail.read_bytes()[: detail.stat().st_size // 2])
    shown = _report(runs)
    assert "INVALID" not in shown and "damaged" in shown and "cut short" in shown
