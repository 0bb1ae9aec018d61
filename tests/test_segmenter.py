import numpy as np

from preprocessing.segmenter import Segmenter, cut_points, split_a_b, trim_to_total
from xlnet.schema import CLS_ID, SEP_ID


def _spec_split(sent_ids, begin, total, rng):
    """§3.2 transcribed step by step, with the original's Python random calls mapped to rng."""
    length = len(sent_ids)
    end, cuts, e = length, [], begin + 1
    while e < length:
        if sent_ids[e] != sent_ids[e - 1]:
            if e - begin >= total:
                end = e
                break
            cuts.append(e)
        e += 1
    random_b = True if not cuts else rng.random() < 0.5
    if random_b:
        a_end = end if not cuts else cuts[rng.integers(len(cuts))]
        b_len = max(1, total - (a_end - begin))
        b_begin = int(rng.integers(0, length - 1 - b_len + 1))
        b_end = b_begin + b_len
        while b_begin > 0 and sent_ids[b_begin - 1] == sent_ids[b_begin]:
            b_begin -= 1
        while b_end < length - 1 and sent_ids[b_end - 1] == sent_ids[b_end]:
            b_end += 1
        label = 0
    else:
        a_end = cuts[rng.integers(len(cuts))]
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
    for trial in range(400):
        length = int(rng.integers(80, 400))
        sent_ids = _random_sent_ids(rng, length, mean_sentence=[3, 15, 60][trial % 3])
        total = int(rng.integers(5, 60))
        begin = int(rng.integers(0, length - total - 3))
        seed = int(rng.integers(1 << 30))
        expected = _spec_split(sent_ids, begin, total, np.random.default_rng(seed))
        got = split_a_b(cut_points(sent_ids), length, begin, total, np.random.default_rng(seed))
        assert got == expected, (trial, got, expected)
        a_end, b_begin, b_end, _ = got
        assert a_end - begin >= 1 and b_end - b_begin >= 1
        assert (a_end - begin) + (b_end - b_begin) == total


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
                assert trim_to_total(a, b, total) == (x, y)


def test_layout_length_invariant_and_reuse_continuation():
    seq_len, reuse_len = 64, 32
    rng = np.random.default_rng(1)
    ids = rng.integers(20, 300, size=1000).astype(np.int32)
    sent_ids = _random_sent_ids(rng, ids.size, mean_sentence=12)
    segmenter = Segmenter(seq_len, reuse_len)
    segments = list(segmenter.segments(ids, sent_ids, np.random.default_rng(2)))
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
    assert list(segmenter.segments(ids, np.zeros(63, np.int8), np.random.default_rng())) == []
