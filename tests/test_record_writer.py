import os

import google_crc32c
import numpy as np
import pytest
import tensorflow as tf

from preprocessing.record_writer import RecordWriter, encode_examples


def _tf_example(features, row):
    return tf.train.Example(features=tf.train.Features(feature={
        name: tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(v)[row].tolist()))
        for name, v in features.items()}))


def test_bytes_equal_tensorflow_deterministic_serialisation():
    rng = np.random.default_rng(0)
    features = {
        "input_ids": rng.integers(0, 32000, size=(5, 512)),
        "segment_ids": rng.integers(0, 3, size=(5, 512)),
        "is_masked": rng.integers(0, 2, size=(5, 512)),
        "perm_rank": np.stack([rng.permutation(512) for _ in range(5)]),
        "label": np.array([[0], [1], [1], [0], [1]]),
        "stream": np.full((5, 1), 70000),
        "index": np.array([[0], [1], [2], [1 << 40], [(1 << 63) - 1]]),
        "reverse": np.zeros((5, 1), int),
    }
    records = encode_examples(features)
    for row, record in enumerate(records):
        assert record == _tf_example(features, row).SerializeToString(deterministic=True)


def test_negative_values_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        encode_examples({"label": np.array([[-1]])})


def test_tensorflow_reads_the_file_and_a_failed_write_leaves_nothing(tmp_path):
    features = {"input_ids": np.arange(12).reshape(3, 4), "label": np.array([[1], [0], [1]])}
    path = str(tmp_path / "pass-000" / "stream-00000.tfrecord")
    with RecordWriter(path) as writer:
        writer.write(encode_examples(features))
    parsed = [tf.train.Example.FromString(r.numpy())
              for r in tf.data.TFRecordDataset(path)]
    assert [list(p.features.feature["input_ids"].int64_list.value) for p in parsed] == \
        np.arange(12).reshape(3, 4).tolist()
    failed = str(tmp_path / "pass-000" / "stream-00001.tfrecord")
    with pytest.raises(RuntimeError):
        with RecordWriter(failed) as writer:
            writer.write(encode_examples(features))
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in (tmp_path / "pass-000").iterdir()) == ["stream-00000.tfrecord"]


def test_size_and_crc32c_are_those_of_the_written_file(tmp_path):
    """Kept while writing (in two batches here), they equal a measure of the file itself."""
    features = {"input_ids": np.arange(300).reshape(3, 100), "label": np.array([[1], [0], [1]])}
    path = str(tmp_path / "stream-00000.tfrecord")
    with RecordWriter(path) as writer:
        writer.write(encode_examples(features))
        writer.write(encode_examples(features)[:1])
    content = open(path, "rb").read()
    assert writer.records == 4
    assert writer.size == len(content) == os.path.getsize(path)
    assert writer.crc32c == google_crc32c.value(content)
