import hashlib
import json

import numpy as np
import pytest

from visionperf.accuracy import top1
from visionperf.errors import UserError
from visionperf.postprocess.classify import labels_from_output


def write_log(path, entries):
    recs = [{"seq_id": k, "qsl_idx": i, "data": np.float32(v).tobytes().hex().upper()}
            for k, (i, v) in enumerate(entries)]
    path.write_text(json.dumps(recs))
    return path


def test_top1_reads_float32_labels_and_counts_each_sample_once(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], np.int32)
    log = write_log(tmp_path / "mlperf_log_accuracy.json",
                    [(0, 3), (1, 1), (2, 9), (3, 1), (3, 7), (4, 0)])
    acc = top1(log, labels)
    assert (acc.good, acc.total) == (3, 5)
    assert acc.text().splitlines() == [
        "accuracy=60.000%, good=3, total=5",
        f"hash={hashlib.sha256(log.read_bytes()).hexdigest()}",
    ]


def test_bad_logs_are_user_errors(tmp_path):
    labels = np.zeros(3, np.int32)
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(UserError, match="not valid JSON"):
        top1(bad, labels)
    bad.write_text('{"a": 1}')
    with pytest.raises(UserError, match="not an MLPerf accuracy log"):
        top1(bad, labels)
    with pytest.raises(UserError, match="outside the dataset"):
        top1(write_log(tmp_path / "x.json", [(7, 0)]), labels)
    with pytest.raises(UserError, match="cannot read"):
        top1(tmp_path / "none.json", labels)


def test_labels_from_argmax_or_scores_drop_the_background_class():
    np.testing.assert_array_equal(labels_from_output(np.array([1, 5, 1000]), 3, 1), [0, 4, 999])
    scores = np.zeros((2, 1001), np.float32)
    scores[0, 7], scores[1, 1] = 1, 1
    out = labels_from_output(scores, 2, 1)
    assert out.dtype == np.float32 and out.tolist() == [6.0, 0.0]
