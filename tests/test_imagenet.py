"""The ImageNet reader and the reference preprocessing, against a straightforward re-statement."""

import shutil

import cv2
import numpy as np
import pytest

from visionperf.datasets import open_dataset, preprocess_one
from visionperf.datasets.imagenet import decode_bgr
from visionperf.errors import UserError
from visionperf.workloads import RESNET50


def reference_pre_process_vgg(path) -> np.ndarray:
    """The MLCommons reference recipe written out plainly (cv2.imread, as the reference does)."""
    img = cv2.imread(str(path))
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    height, width, _ = img.shape
    new_height = int(100.0 * 224 / 87.5)
    new_width = int(100.0 * 224 / 87.5)
    if height > width:
        w, h = new_width, int(new_height * height / width)
    else:
        h, w = new_height, int(new_width * width / height)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    height, width, _ = img.shape
    left, right = int((width - 224) / 2), int((width + 224) / 2)
    top, bottom = int((height - 224) / 2), int((height + 224) / 2)
    img = img[top:bottom, left:right]
    img = np.asarray(img, dtype="float32")
    img -= np.array([123.68, 116.78, 103.94], dtype=np.float32)
    return img.transpose([2, 0, 1])


def test_preprocessing_matches_the_reference_recipe(imagenet_dir):
    ds = open_dataset(RESNET50, imagenet_dir)
    for i in range(len(ds)):
        ours = preprocess_one(RESNET50, ds.path(i), "NCHW")
        ref = reference_pre_process_vgg(ds.path(i))
        assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
        np.testing.assert_array_equal(ours, ref)
    nhwc = preprocess_one(RESNET50, ds.path(0), "NHWC")
    np.testing.assert_array_equal(nhwc, reference_pre_process_vgg(ds.path(0)).transpose(1, 2, 0))


def test_sample_data_has_the_real_layout(imagenet_dir):
    ds = open_dataset(RESNET50, imagenet_dir)
    assert len(ds) == 48 and ds.synthetic
    assert ds.files[0] == "ILSVRC2012_val_00000001.JPEG"
    assert ds.labels.dtype == np.int32 and ds.labels.min() >= 0 and ds.labels.max() < 1000
    shapes = [cv2.imread(str(ds.path(i)), cv2.IMREAD_UNCHANGED).shape for i in range(len(ds))]
    assert any(len(s) == 2 for s in shapes), "some images must be grayscale"
    assert len({s[:2] for s in shapes}) > 20, "sizes must vary"
    assert any(s[0] > s[1] for s in shapes) and any(s[0] < s[1] for s in shapes)
    for i in range(len(ds)):
        assert ds.path(i).read_bytes()[:2] == b"\xff\xd8"  # real JPEG files


def test_grayscale_becomes_three_channels(tmp_path):
    cv2.imwrite(str(tmp_path / "g.JPEG"), np.full((300, 400), 128, np.uint8))
    assert decode_bgr(tmp_path / "g.JPEG").shape == (300, 400, 3)


def test_count_limits_the_list(imagenet_dir):
    assert len(open_dataset(RESNET50, imagenet_dir, count=5)) == 5


@pytest.fixture
def copy_of(imagenet_dir, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(imagenet_dir, d)
    return d


def test_missing_directory(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        open_dataset(RESNET50, tmp_path / "nope")


def test_missing_or_empty_val_map(copy_of):
    (copy_of / "val_map.txt").write_text("")
    with pytest.raises(UserError, match="lists no images"):
        open_dataset(RESNET50, copy_of)
    (copy_of / "val_map.txt").unlink()
    with pytest.raises(UserError, match="val_map.txt is missing"):
        open_dataset(RESNET50, copy_of)


def test_val_map_naming_a_missing_image(copy_of):
    (copy_of / "ILSVRC2012_val_00000007.JPEG").unlink()
    with pytest.raises(UserError, match="ILSVRC2012_val_00000007.JPEG is missing"):
        open_dataset(RESNET50, copy_of)


def test_malformed_val_map_line(copy_of):
    with open(copy_of / "val_map.txt", "a") as f:
        f.write("just_a_name\n")
    with pytest.raises(UserError, match=r"val_map.txt:49: expected 'FILE LABEL'"):
        open_dataset(RESNET50, copy_of)


def test_corrupt_truncated_and_empty_images(copy_of):
    p = copy_of / "ILSVRC2012_val_00000003.JPEG"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated JPEG"):
        preprocess_one(RESNET50, p, "NCHW")
    p.write_bytes(b"this is not an image")
    with pytest.raises(UserError, match="not a readable image"):
        preprocess_one(RESNET50, p, "NCHW")
    p.write_bytes(b"")
    with pytest.raises(UserError, match="is empty"):
        preprocess_one(RESNET50, p, "NCHW")
