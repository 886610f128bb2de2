"""YOLO (issue 24), its first part: the workload spec, the COCO safe selection, the letterbox and
its cache, and the one-line refusals of the pieces not built yet."""

import json
import shutil
import struct
from dataclasses import replace

import cv2
import numpy as np
import pytest

from conftest import visionperf
from visionperf.cache import expected_manifest
from visionperf.datasets import open_dataset, preprocess_one
from visionperf.datasets.imagenet import decode_bgr
from visionperf.datasets.letterbox import letterbox, letterbox_geometry
from visionperf.datasets.synthetic import make_coco
from visionperf.errors import UserError
from visionperf.preprocess import ensure_cache
from visionperf.workloads import DETECTION, YOLO, YOLO_DETECTION, get_workload


def reference_letterbox(img: np.ndarray, auto: bool, new_shape=(640, 640), stride=32) -> np.ndarray:
    """Ultralytics' LetterBox.__call__ (data/augment.py) step by step, padding with np.pad."""
    shape = img.shape[:2]
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    new_unpad = int(round(shape[1] * r)), int(round(shape[0] * r))
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    dw /= 2
    dh /= 2
    if shape[::-1] != new_unpad:
        img = cv2.resize(img, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    return np.pad(img, ((top, bottom), (left, right), (0, 0)), constant_values=114)


def reference_tensor(bgr: np.ndarray, auto: bool) -> np.ndarray:
    """Ultralytics' predictor.preprocess up to the division: stack, BGR -> RGB, BHWC -> BCHW."""
    return np.ascontiguousarray(np.stack([reference_letterbox(bgr, auto)])[..., ::-1].transpose(0, 3, 1, 2))[0]


def _image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), (x + y) % 256], -1).astype(np.uint8)
    return np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)


def _exif_jpeg(img: np.ndarray, orientation: int) -> bytes:
    """A JPEG whose EXIF says to rotate it (orientation 6: 90 degrees clockwise)."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += b"\x00\x00\x00\x00"
    payload = b"Exif\x00\x00" + tiff
    data = buf.tobytes()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


SIZES = {"landscape": (427, 640), "portrait": (640, 427), "tiny": (7, 13), "very-wide": (40, 1900),
         "tall-odd": (1001, 333), "upscale-half-even": (512, 426), "square-small": (300, 300)}


@pytest.mark.parametrize("mode", ["square", "rect"])
@pytest.mark.parametrize("name", sorted(SIZES))
def test_letterbox_equals_ultralytics_steps(name, mode, tmp_path):
    h, w = SIZES[name]
    path = tmp_path / "im.png"  # lossless: the file is the array
    cv2.imwrite(str(path), _image(h, w, h * w))
    bgr = decode_bgr(path)
    want = reference_tensor(bgr, auto=mode == "rect")
    yolo = YOLO if mode == "square" else replace(YOLO, preprocessing=replace(YOLO.preprocessing, shape_mode="rect"))
    got = preprocess_one(yolo, path, "NCHW")
    assert got.dtype == np.uint8 and got.shape == want.shape
    assert np.array_equal(got, want)
    if mode == "square":
        assert got.shape == (3, 640, 640)
    else:
        assert got.shape[1] % 32 == 0 and got.shape[2] % 32 == 0 and max(got.shape[1:]) == 640
    nhwc = preprocess_one(yolo, path, "NHWC")
    assert np.array_equal(nhwc, want.transpose(1, 2, 0))


def test_letterbox_worked_examples():
    # yolo.md section 3: a 640x427 image is 448x640 in rect (pad 10 / 11), 640x640 square (106 / 107).
    g = letterbox_geometry(427, 640, 640, "rect")
    assert (g.height, g.width, g.top, g.height - g.new_height - g.top) == (448, 640, 10, 11)
    g = letterbox_geometry(427, 640, 640, "square")
    assert (g.height, g.width, g.top, g.height - g.new_height - g.top) == (640, 640, 106, 107)
    # Python's round, half to even: 426 x 1.25 = 532.5 -> 532 (C's round gives 533).
    assert letterbox_geometry(512, 426, 640, "square").new_width == 532
    with pytest.raises(ValueError, match="shape mode"):
        letterbox_geometry(10, 10, 640, "fit")


def test_grayscale_and_exif_rotated_jpegs_are_decoded_as_opencv_does(tmp_path):
    gray = tmp_path / "gray.jpg"
    cv2.imwrite(str(gray), _image(333, 500, 1)[..., 0])
    bgr = decode_bgr(gray)
    assert bgr.shape == (333, 500, 3)
    assert np.array_equal(preprocess_one(YOLO, gray, "NCHW"), reference_tensor(bgr, auto=False))

    rotated = tmp_path / "exif.jpg"
    rotated.write_bytes(_exif_jpeg(_image(300, 500, 2), orientation=6))
    bgr = decode_bgr(rotated)
    raw = cv2.imread(str(rotated), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert raw.shape == (300, 500, 3) and bgr.shape == (500, 300, 3)  # EXIF applied
    assert np.array_equal(bgr, cv2.rotate(raw, cv2.ROTATE_90_CLOCKWISE))
    for mode, auto in (("square", False), ("rect", True)):
        yolo = replace(YOLO, preprocessing=replace(YOLO.preprocessing, shape_mode=mode))
        assert np.array_equal(preprocess_one(yolo, rotated, "NCHW"), reference_tensor(bgr, auto))


def test_letterbox_keeps_channel_order_and_pads_with_114():
    img = np.zeros((10, 20, 3), np.uint8)
    img[..., 0] = 1
    out = letterbox(img, 40, "square")
    assert out.shape == (40, 40, 3)
    assert (out[0] == 114).all() and (out[20, :, 0] == 1).all()


def test_yolo_spec():
    w = get_workload("yolo")
    assert w is YOLO and w.dataset == "coco-safe" and w.task == "detection"
    assert w.row_shape("NCHW") == (3, 640, 640) and w.input_dtype == "uint8"
    assert w.performance_sample_count == 64 and w.dataset_size == 1525
    assert w.server_latency_bound_ms is None
    assert w.multistream_samples_per_query == 8 and w.offline_min_samples_per_query == 1525
    assert dict(w.benchmarks) == pytest.approx({"yolo-95": 50.73, "yolo-99": 52.866})
    assert w.accuracy_target == pytest.approx(52.866)
    assert w.input_names == ("images",) and w.output_names == ("output0",) and w.num_classes == 80
    n = YOLO_DETECTION
    assert (n.score_threshold, n.iou_threshold, n.class_offset, n.max_per_image) == (0.001, 0.7, 7680.0, 300)
    assert n.best_class_only and len(n.coco_ids) == 80 and n.coco_ids[-1] == 90
    assert sum((640 // s) ** 2 for s in n.strides) == 8400
    assert "yolo" not in DETECTION  # its own NMS, not the SSD/RetinaNet one


# -- the COCO safe selection ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def coco_full(tmp_path_factory):
    return make_coco(tmp_path_factory.mktemp("yolo") / "coco", count=24, seed=3)


def _safe_images(coco_full) -> list[dict]:
    doc = json.loads((coco_full / "annotations/instances_val2017.json").read_text())
    return [im for im in doc["images"] if im["license"] in (4, 5, 6, 7, 8)]


def test_sample_coco_mixes_safe_and_unsafe_licences(coco_full):
    doc = json.loads((coco_full / "annotations/instances_val2017.json").read_text())
    licences = {im["license"] for im in doc["images"]}
    assert licences & {1, 2, 3} and licences & {4, 5, 6, 7, 8}
    assert [lic["id"] for lic in doc["licenses"]] == list(range(1, 9))


def test_full_val2017_selects_the_safe_subset_in_order(coco_full, tmp_path):
    ds = open_dataset(YOLO, coco_full)
    want = _safe_images(coco_full)
    assert ds.image_ids.tolist() == [im["id"] for im in want]
    assert list(ds.files) == [f"val2017/{im['file_name']}" for im in want]
    assert ds.sizes.tolist() == [[im["height"], im["width"]] for im in want]
    assert ds.synthetic
    assert len(open_dataset(YOLO, coco_full, count=3)) == 3
    # A listed file that does not exist is skipped, as the reference's loader does.
    copy = tmp_path / "coco"
    shutil.copytree(coco_full, copy)
    (copy / "val2017" / want[1]["file_name"]).unlink()
    ds = open_dataset(YOLO, copy)
    assert ds.image_ids.tolist() == [im["id"] for im in want if im is not want[1]]


def _distributed(coco_full, root, inside: bool):
    """The distributed COCO safe set: the safe images in val2017_safe/, the annotations (only
    theirs) beside it, or inside it (MLCommons automation)."""
    doc = json.loads((coco_full / "annotations/instances_val2017.json").read_text())
    safe = _safe_images(coco_full)
    ids = {im["id"] for im in safe}
    doc = dict(doc, images=safe, annotations=[a for a in doc["annotations"] if a["image_id"] in ids])
    images = root / "val2017_safe"
    images.mkdir(parents=True)
    for im in safe:
        shutil.copy(coco_full / "val2017" / im["file_name"], images)
    ann = (images if inside else root) / "annotations/instances_val2017.json"
    ann.parent.mkdir()
    ann.write_text(json.dumps(doc))
    return [im["id"] for im in safe]


def test_both_distributed_layouts(coco_full, tmp_path):
    ids = _distributed(coco_full, tmp_path / "beside", inside=False)
    for root in (tmp_path / "beside", tmp_path / "beside/val2017_safe"):
        ds = open_dataset(YOLO, root)
        assert ds.image_ids.tolist() == ids
        assert all(ds.path(i).is_file() for i in range(len(ds)))
    assert _distributed(coco_full, tmp_path / "inside", inside=True) == ids
    ds = open_dataset(YOLO, tmp_path / "inside/val2017_safe")
    assert ds.image_ids.tolist() == ids and ds.files[0] == ds.path(0).name


def test_folders_that_are_not_coco_safe_are_refused(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        open_dataset(YOLO, tmp_path / "nowhere")
    with pytest.raises(UserError, match="is not a COCO safe or COCO val2017 folder"):
        open_dataset(YOLO, tmp_path)


# -- the cache -------------------------------------------------------------------------------------

def test_yolo_cache_holds_the_square_letterbox_in_uint8(coco_full, tmp_path):
    ds = open_dataset(YOLO, coco_full, count=5)
    cache = ensure_cache(YOLO, ds, tmp_path / "c", dtype="uint8", layout="NCHW", log=lambda m: None, workers=1)
    assert cache.data.dtype == np.uint8 and cache.data.shape == (5, 3, 640, 640)
    assert cache.manifest["shape_mode"] == "square" and cache.manifest["preprocessing"]["shape_mode"] == "square"
    for i in range(5):
        assert np.array_equal(cache.data[i], reference_tensor(decode_bgr(ds.path(i)), auto=False))


def test_yolo_rect_cache_holds_each_row_at_its_own_shape_with_its_geometry(coco_full, tmp_path):
    ds = open_dataset(YOLO, coco_full, count=5)
    rect = replace(YOLO, preprocessing=replace(YOLO.preprocessing, shape_mode="rect"))
    cache = ensure_cache(rect, ds, tmp_path / "c", dtype="uint8", layout="NCHW", log=lambda m: None, workers=1)
    assert cache.manifest["shape_mode"] == "rect" and cache.data.shape == (5, 3, 640, 640)
    assert cache.geometry.shape == (5, 4) and cache.geometry.dtype == np.int32
    for i in range(5):
        bgr = decode_bgr(ds.path(i))
        want = reference_tensor(bgr, auto=True)
        h0, w0, h, w = cache.geometry[i].tolist()
        assert (h0, w0) == bgr.shape[:2] and (h, w) == want.shape[1:]
        flat = cache.data[i].reshape(-1)
        assert np.array_equal(flat[: want.size].reshape(want.shape), want) and not flat[want.size:].any()
    # the square cache of the same images is another cache (the shape mode is in its key)
    square = ensure_cache(YOLO, ds, tmp_path / "c", dtype="uint8", layout="NCHW", log=lambda m: None, workers=1)
    assert square.path != cache.path and (square.geometry[:, 2:] == 640).all()


def test_yolo_cache_refuses_float32(coco_full):
    ds = open_dataset(YOLO, coco_full, count=2)
    with pytest.raises(UserError, match=r"the / 255 belongs to the model\), not float32: pass --dtype uint8"):
        expected_manifest(YOLO, ds, "float32", "NCHW")


# -- what cannot be done is refused in one line ------------------------------------------------------

def test_what_yolo_cannot_do_is_refused_in_one_line(coco_full, tmp_path):
    for args, said in [
        (("quantize", "yolo", "--model", "m.onnx", "--dataset", coco_full, "--out", tmp_path / "q.onnx"),
         "yolo: `quantize` does not support it yet: run its float32 model"),
        (("preprocess", "yolo", "--dataset", coco_full, "--out", tmp_path / "f", "--dtype", "float32"),
         "not float32: pass --dtype uint8"),
        (("preprocess", "resnet50", "--dataset", coco_full, "--out", tmp_path / "g", "--shape-mode", "rect"),
         "resnet50 is not letterboxed: --shape-mode is for yolo only"),
        (("run", "yolo", "--scenario", "Server", "--model", "m.onnx", "--dataset", coco_full, "--out",
          tmp_path / "r"), "yolo has no Server scenario (Edge only)"),
    ]:
        p = visionperf(*args, check=False)
        assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
        assert said in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "r").exists()


def test_a_rect_cache_that_skipped_a_bad_image_keeps_the_geometry_of_the_rows_it_kept(coco_full, tmp_path):
    data = tmp_path / "coco"
    shutil.copytree(coco_full, data)
    ds = open_dataset(YOLO, data, count=5)
    ds.path(2).write_bytes(b"not a jpeg")
    rect = replace(YOLO, preprocessing=replace(YOLO.preprocessing, shape_mode="rect"))
    cache = ensure_cache(rect, ds, tmp_path / "c", dtype="uint8", layout="NCHW", log=lambda m: None, workers=1,
                         skip_bad=True)
    assert cache.dataset_index.tolist() == [0, 1, 3, 4] and cache.geometry.shape == (4, 4)
    for row, i in enumerate(cache.dataset_index):
        bgr = decode_bgr(ds.path(int(i)))
        want = reference_tensor(bgr, auto=True)
        assert tuple(cache.geometry[row]) == (*bgr.shape[:2], *want.shape[1:])
        assert np.array_equal(cache.data[row].reshape(-1)[: want.size].reshape(want.shape), want)
    assert not list((cache.path).glob("*.partial")) and not (cache.path / "build").exists()
