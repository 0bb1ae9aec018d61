import types

import numpy as np

from preprocessing.segmenter import Segmenter, cut_points, split_a_b, trim_to_total
from xlnet.schema import CLS_ID, SEP_ID


def _one_by_one(segmenter, ids, sent_ids, rng):
    """The segments one at a time (batches of one: the same draws as larger batches)."""
    for batch in segmenter.batches(ids, sent_ids, rng, 1):
        yield types.SimpleNamespace(index=int(batch.index[0]), input_ids=batch.input_ids[0],
                                    segment_ids=batch.segment_ids[0], label=int(batch.label[0]),
                                    a_end=int(batch.a_end[0]))


def _spec_split(sent_ids, begin, total, draws):
    """§3.2 transcribed step by step; the original's Python random calls read `draws` (three
    uniforms): random() -> draws[0], choice(cuts) -> draws[1], randint(0, k) -> draws[2]."""
    length = len(sent_ids)
    end, cuts, e = length, [], begin + 1
    while e < length:
        if sent_ids[e] != sent_ids[e - 1]:
            if e - begin >= total:
                end = e
                break
            cuts.append(e)
        e += 1
    random_b = True if not cuts else draws[0] < 0.5
    if random_b:
        a_end = end if not cuts else cuts[int(draws[1] * len(cuts))]
        b_len = max(1, total - (a_end - begin))
        b_begin = int(draws[2] * (length - 1 - b_len + 1))
        b_end = b_begin + b_len
        while b_begin > 0 and sent_ids[b_begin - 1] == sent_ids[b_begin]:
            b_begin -= 1
        while b_end < length - 1 and sent_ids[b_end - 1] == sent_ids[b_end]:
            b_end += 1
        label = 0
    else:
        a_end = cuts[int(draws[1] * len(cuts))]
        b_begin, b_end, label = a_end, end, 1
    while (a_end - begin) + (b_end - b_begin) > total:
        if a_end - begin > b_end - b_begin:
            a_end -= 1
        else:
            b_end -= 1
    return a_end, b_begin, b_end, label


def _random_sent_ids(rng, length, mean_sentence):
    lengths = rng.geometric(1 / mean_sentence, size=length)
    return np.repeat(np.arange(lengths.size) % 2, lengths)[:length].astype(np.int8)


def test_split_matches_the_spec_transcription():
    rng = np.random.default_rng(0)
    labels = []
    for trial in range(400):
        length = int(rng.integers(80, 400))
        sent_ids = _random_sent_ids(rng, length, mean_sentence=[3, 15, 60][trial % 3])
        total = int(rng.integers(5, 60))
        begins = rng.integers(0, length - total - 3, size=8)  # [n]
        draws = rng.random((8, 3))  # [n, 3]
        got = np.stack(split_a_b(cut_points(sent_ids), length, begins, total, draws), axis=1)
        for begin, row_draws, split in zip(begins, draws, got.tolist()):
            assert tuple(split) == _spec_split(sent_ids, begin, total, row_draws), trial
            a_end, b_begin, b_end, label = split
            assert a_end - begin >= 1 and b_end - b_begin >= 1
            assert (a_end - begin) + (b_end - b_begin) == total
            labels.append(label)
    assert 0.3 < np.mean(labels) < 0.5  # true B: half of the segments that have a cut


def test_trim_matches_the_loop():
    for a in range(1, 30):
        for b in range(1, 30):
            for total in range(2, a + b + 1):
                x, y = a, b
                while x + y > total:
                    if x > y:
                        x -= 1
                    else:
                        y -= 1
                assert tuple(trim_to_total(np.int64(a), np.int64(b), total)) == (x, y)


def test_layout_length_invariant_and_reuse_continuation():
    seq_len, reuse_len = 64, 32
    rng = np.random.default_rng(1)
    ids = rng.integers(20, 300, size=1000).astype(np.int32)
    sent_ids = _random_sent_ids(rng, ids.size, mean_sentence=12)
    segmenter = Segmenter(seq_len, reuse_len)
    segments = list(_one_by_one(segmenter, ids, sent_ids, np.random.default_rng(2)))
    assert len(segments) == (1000 - 64) // 32 + 1 == segmenter.num_segments(1000)
    for k, segment in enumerate(segments):
        x, s = segment.input_ids, segment.segment_ids
        assert x.shape == (seq_len,) and s.shape == (seq_len,)
        assert segment.index == k
        assert x[:reuse_len].tolist() == ids[k * reuse_len:(k + 1) * reuse_len].tolist()
        a_len = segment.a_end - (k + 1) * reuse_len
        # A continues the reuse part, and the next reuse part continues this one.
        assert x[reuse_len:reuse_len + a_len].tolist() == ids[(k + 1) * reuse_len:
                                                              segment.a_end].tolist()
        sep_positions = np.flatnonzero(x == SEP_ID).tolist()
        assert sep_positions == [reuse_len + a_len, seq_len - 2] and x[-1] == CLS_ID
        assert (s[:reuse_len + a_len + 1] == 0).all() and (s[reuse_len + a_len + 1:-1] == 1).all()
        assert s[-1] == 2
    covered = segments[-1].a_end
    assert 1000 - covered < seq_len
    labels = [s.label for s in segments]
    assert 0 in labels and 1 in labels


def test_short_stream_has_no_segments():
    segmenter = Segmenter(64, 32)
    ids = np.arange(63, dtype=np.int32)
    assert list(_one_by_one(segmenter, ids, np.zeros(63, np.int8), np.random.default_rng())) == []
