import logging
import os
import time

import numpy as np

from preprocessing.job_progress import JobProgress, expected_stream_files
from preprocessing.stream_builder import TokenizedRange
from preprocessing.token_store import write_store
from xlnet import load_run_config
from xlnet.schema import stream_file


def _range(documents, tokens_each):
    """A TokenizedRange of `documents` one-line documents of `tokens_each` tokens."""
    ids = np.arange(documents * tokens_each, dtype=np.int32)
    lengths = np.full(documents, tokens_each, np.int64)
    return TokenizedRange(ids=ids, line_lengths=lengths, document_tokens=lengths,
                          document_lines=np.ones(documents, np.int64),
                          documents=np.arange(documents, dtype=np.int64))


def _wait_for(caplog, text, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = [r.getMessage() for r in caplog.records]
        if any(text in m for m in messages):
            return
        time.sleep(0.01)
    raise AssertionError(f"no progress line with {text!r} in {messages}")


def test_progress_counts_what_this_run_wrote_and_not_what_a_killed_run_left(tmp_path, caplog):
    output = str(tmp_path)
    write_store(output, "train", 1, _range(9, 9), block_tokens=8)  # a killed run's range
    stale_stream = tmp_path / stream_file(0, 0)
    stale_stream.parent.mkdir(parents=True)
    stale_stream.write_bytes(b"left by a killed run")
    stale_time = time.time() - 600
    for path in (stale_stream, *(tmp_path / ".tokens").iterdir()):
        os.utime(path, (stale_time, stale_time))
    caplog.set_level(logging.INFO, logger="preprocessing.prepare")
    with JobProgress(output, range_bytes=[3_000_000, 1_000_000], stream_files=2, poll_s=0.01,
                     log_every_s=0.0):
        _wait_for(caplog, "tokenizing: 0% (0.0 MB of 4.0 MB) 0 documents, 0 tokens")
        write_store(output, "train", 0, _range(3, 5), block_tokens=8)
        _wait_for(caplog, "tokenizing: 75% (3.0 MB of 4.0 MB) 3 documents, 15 tokens ETA")
        write_store(output, "train", 1, _range(2, 4), block_tokens=8)
        _wait_for(caplog, "tokenizing: 100% (4.0 MB of 4.0 MB) 5 documents, 23 tokens ETA")
        _wait_for(caplog, "writing stream files: 0% (0 of 2)")
        stale_stream.write_bytes(b"rewritten")
        _wait_for(caplog, "writing stream files: 50% (1 of 2)")
        (tmp_path / stream_file(0, 1)).write_bytes(b"new")
        _wait_for(caplog, "writing stream files: 100% (2 of 2)")


def test_the_stream_files_due_follow_the_data_config():
    data = load_run_config("tiny", ["data.num_streams=4", "data.num_passes=3",
                                    "data.eval_num_streams=2"]).data
    assert expected_stream_files(data, has_eval_split=False) == 4 * 3 * (1 + data.bi_data)
    assert expected_stream_files(data, has_eval_split=True) == (4 * 3 + 2) * (1 + data.bi_data)
