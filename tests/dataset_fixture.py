"""Writes a dataset directory exactly per the `xlnet/schema.py` contract from synthetic token
streams (real TFRecords of tf.train.Example), for trainer tests that must not wait for Beam.

Each forward stream is a random token row; segment `i` takes its reuse part from
`row[i·R : (i+1)·R]` and its A part from where the next reuse part starts (original-xlnet.md
§3.4), so consecutive segments of a stream continue each other. The reversed copy of forward
stream `s` is stream `num_streams + s`, built the same way from the reversed row.
"""

import hashlib
import os

import google_crc32c
import numpy as np
import tensorflow as tf

from xlnet import schema
from preprocessing.beam_files import write_file


def _segment(row, index, data, rng):
    seq_len, reuse_len = data.seq_len, data.reuse_len
    start = index * reuse_len
    reuse = row[start:start + reuse_len]
    both = seq_len - reuse_len - 3
    a_len = int(rng.integers(1, both))
    a = row[start + reuse_len:start + reuse_len + a_len]
    b_start = int(rng.integers(0, len(row) - (both - a_len)))
    b = row[b_start:b_start + both - a_len]
    input_ids = np.concatenate(
        [reuse, a, [schema.SEP_ID], b, [schema.SEP_ID], [schema.CLS_ID]])
    segment_ids = np.array([0] * (reuse_len + a_len + 1) + [1] * (len(b) + 1) + [2])
    first_goal, second_goal = data.predict_goals
    is_masked = np.zeros(seq_len, np.int64)
    is_masked[rng.choice(reuse_len, first_goal, replace=False)] = 1
    # The second half may mark <sep>/<cls> too (Q11): those are dropped from the targets.
    is_masked[reuse_len + rng.choice(seq_len - reuse_len, second_goal, replace=False)] = 1
    perm_rank = np.concatenate([_block_ranks(reuse_len, data.perm_size, rng),
                                _block_ranks(seq_len - reuse_len, data.perm_size, rng)])
    label = int(rng.integers(0, 2))  # unused by the trainer (Q9), written for the contract
    return input_ids, segment_ids, is_masked, perm_rank, label


def _block_ranks(length, perm_size, rng):
    sigma = rng.permutation(perm_size)
    return np.concatenate([c + sigma for c in range(0, length, perm_size)])


def _example(stream, index, reverse, parts):
    input_ids, segment_ids, is_masked, perm_rank, label = parts
    feature = {name: tf.train.Feature(int64_list=tf.train.Int64List(value=list(map(int, v))))
               for name, v in zip(schema.SEQUENCE_FEATURES,
                                  (input_ids, segment_ids, is_masked, perm_rank))}
    for name, value in zip(schema.SCALAR_FEATURES, (label, stream, index, reverse)):
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def random_row(rng, length, n_token):
    return rng.integers(9, n_token, length)


def _write_split(directory, data, split, num_passes, num_streams, segments_per_stream, seed,
                 n_token, rng, make_row, written):
    row_len = (segments_per_stream + 1) * data.reuse_len + data.seq_len
    passes = []
    for pass_index in range(num_passes):
        rows = [make_row(rng, row_len, n_token) for _ in range(num_streams)]
        directions = [(0, rows)] + ([(1, [r[::-1] for r in rows])] if data.bi_data else [])
        streams = []
        for reverse, direction_rows in directions:
            for forward_index, row in enumerate(direction_rows):
                stream = forward_index + reverse * num_streams
                relative = schema.stream_file(pass_index, stream, split)
                os.makedirs(os.path.dirname(os.path.join(directory, relative)), exist_ok=True)
                with tf.io.TFRecordWriter(os.path.join(directory, relative)) as writer:
                    for index in range(segments_per_stream):
                        parts = _segment(row, index, data, rng)
                        written.setdefault((split, pass_index, stream), []).append(parts)
                        writer.write(_example(stream, index, reverse, parts)
                                     .SerializeToString(deterministic=True))
                with open(os.path.join(directory, relative), "rb") as f:
                    content = f.read()  # the fixture's own measure, not the checker's
                streams.append({"stream": stream, "reverse": reverse, "file": relative,
                                "examples": segments_per_stream, "size": len(content),
                                "crc32c": schema.crc32c_hex(google_crc32c.value(content))})
        passes.append({"seed": seed * 1000 + pass_index, "streams": streams})
    return passes


def write_dataset(directory, run_config, segments_per_stream=6, seed=0, n_token=None,
                  complete=True, data_overrides=None, eval_segments_per_stream=0,
                  make_row=random_row):
    """Writes the dataset for `run_config.data` (with an eval split of
    `eval_segments_per_stream` segments per stream, when positive; rows from `make_row(rng,
    length, n_token)`); returns {(pass, stream): [input_ids, ...]} of the train split, and
    {("eval", 0, stream): ...} for the eval split."""
    data = run_config.data
    n_token = n_token or run_config.model.n_token
    rng = np.random.default_rng(seed)
    written = {}
    passes = _write_split(directory, data, schema.TRAIN, data.num_passes, data.num_streams,
                          segments_per_stream, seed, n_token, rng, make_row, written)
    eval_passes = []
    if eval_segments_per_stream:
        eval_passes = _write_split(directory, data, schema.EVAL, 1, data.eval_streams,
                                   eval_segments_per_stream, seed + 1, n_token, rng, make_row,
                                   written)
    info = schema.DatasetInfo(
        data={**data.get_config(), **(data_overrides or {})},
        tokenizer={"path": "synthetic", "sha256": hashlib.sha256(b"synthetic").hexdigest(),
                   "vocab_size": n_token,
                   "special_ids": dict(zip(schema.SPECIAL_PIECES, range(9)))},
        passes=passes,
        num_examples=sum(len(v) for k, v in written.items() if k[0] == schema.TRAIN),
        source_files=["synthetic"], eval_passes=eval_passes,
        eval_num_examples=sum(len(v) for k, v in written.items() if k[0] == schema.EVAL))
    write_file(os.path.join(directory, schema.INFO_FILE), info.to_json())
    if complete:
        write_file(os.path.join(directory, schema.COMPLETED_FILE), "")
    return {key[1:] if key[0] == schema.TRAIN else key: value
            for key, value in written.items()}
