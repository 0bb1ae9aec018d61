"""Cuts one stream into examples exactly as the original writing loop does (spec §3.1-§3.3).

Segment k starts at stream offset k*R: its reuse part is stream[k*R : k*R+R], directly followed
by A; B is the true continuation (label 1) or a random span of the same stream (label 0), with
the original's draws, trimming and quirks (Q9). Python's unseeded `random` is replaced by a
seeded numpy Generator (Q3). Targets are not stored (target = input, §5.4), so the split never
needs the token after B and cannot fail (Q14 does not arise): a stream of T >= L tokens gives
(T - L) // R + 1 segments and drops fewer than L tokens at its end.
"""

import array
import bisect
import dataclasses

import numpy as np

from xlnet.schema import CLS_ID, SEP_ID


@dataclasses.dataclass
class Segment:
    index: int
    input_ids: np.ndarray  # [L] int32: reuse part, A, <sep>, B, <sep>, <cls>
    segment_ids: np.ndarray  # [L] int8: 0 reuse+A+sep, 1 B+sep, 2 cls
    label: int  # 1 = B continues A
    a_end: int  # stream offset one past A (the stream is covered up to here)


def cut_points(sent_ids):
    """Offsets k with sent_ids[k] != sent_ids[k-1], ascending."""
    return np.flatnonzero(sent_ids[1:] != sent_ids[:-1]) + 1


def trim_to_total(a_len, b_len, total):
    """§3.2 step 6 in closed form: shorten the longer part (ties: B) until a + b = total."""
    excess = a_len + b_len - total
    if excess <= 0:
        return a_len, b_len
    if a_len > b_len:
        step = min(a_len - b_len, excess)
        a_len, excess = a_len - step, excess - step
    elif b_len > a_len:
        step = min(b_len - a_len, excess)
        b_len, excess = b_len - step, excess - step
    return a_len - excess // 2, b_len - (excess + 1) // 2


def split_a_b(cuts, length, begin, total, rng):
    """§3.2: chooses A and B for a segment whose A starts at `begin`.

    `cuts` are the stream's cut points (a sequence: bisect on an array.array is much cheaper
    per call than numpy's searchsorted), `length` its token count T, `total` = L - R - 3.
    Returns (a_end, b_begin, b_end, label); A = stream[begin:a_end], B = stream[b_begin:b_end].
    """
    first = bisect.bisect_left(cuts, begin + 1)
    stop = bisect.bisect_left(cuts, begin + total)
    candidates = cuts[first:stop]  # cut points closer than `total` to begin
    end = int(cuts[stop]) if stop < len(cuts) else length
    if len(candidates) and rng.random() >= 0.5:
        a_end = int(candidates[rng.integers(len(candidates))])
        a_len, b_len = trim_to_total(a_end - begin, end - a_end, total)
        return begin + a_len, a_end, a_end + b_len, 1
    a_end = int(candidates[rng.integers(len(candidates))]) if len(candidates) else end
    b_len = max(1, total - (a_end - begin))
    b_begin = int(rng.integers(0, length - b_len))  # randint(0, T - 1 - b_len), inclusive
    b_end = b_begin + b_len
    sentence_start = bisect.bisect_right(cuts, b_begin) - 1
    b_begin = int(cuts[sentence_start]) if sentence_start >= 0 else 0
    sentence_end = bisect.bisect_left(cuts, b_end)
    b_end = min(int(cuts[sentence_end]), length - 1) if sentence_end < len(cuts) else length - 1
    a_len, b_len = trim_to_total(a_end - begin, b_end - b_begin, total)
    return begin + a_len, b_begin, b_begin + b_len, 0


@dataclasses.dataclass
class SegmentBatch:
    """Consecutive Segments as arrays."""
    index: np.ndarray  # [n]
    input_ids: np.ndarray  # [n, L] int32
    segment_ids: np.ndarray  # [n, L] int8
    label: np.ndarray  # [n]
    a_end: np.ndarray  # [n]


class Segmenter:
    """Yields the Segments of one stream in order."""

    def __init__(self, seq_len, reuse_len):
        self.seq_len = seq_len
        self.reuse_len = reuse_len
        self.total = seq_len - reuse_len - 3  # |A| + |B|

    def num_segments(self, length):
        return 0 if length < self.seq_len else (length - self.seq_len) // self.reuse_len + 1

    def segments(self, ids, sent_ids, rng):
        """The Segments one at a time (the same draws as `batches`)."""
        for batch in self.batches(ids, sent_ids, rng, 1):
            yield Segment(index=int(batch.index[0]), input_ids=batch.input_ids[0],
                          segment_ids=batch.segment_ids[0], label=int(batch.label[0]),
                          a_end=int(batch.a_end[0]))

    def batches(self, ids, sent_ids, rng, batch_size):
        """SegmentBatches of up to `batch_size` consecutive segments, in order."""
        cuts = array.array("q", cut_points(sent_ids).astype(np.int64).tobytes())  # compact
        length = ids.size
        count = self.num_segments(length)
        for first in range(0, count, batch_size):
            indices = range(first, min(first + batch_size, count))
            splits = np.array([split_a_b(cuts, length, (index + 1) * self.reuse_len,
                                         self.total, rng) for index in indices])  # [n, 4]
            yield self._layout(np.arange(first, first + len(indices)), ids, splits)

    def _layout(self, index, ids, splits):
        """[reuse part][A]<sep>[B]<sep><cls> of each segment; B always ends at L - 3."""
        a_end, b_begin, _, label = splits.T  # [n] each
        first_len = a_end - index * self.reuse_len  # [n]: reuse part and A
        column = np.arange(self.seq_len)[None, :]  # [1, L]
        in_first = column < first_len[:, None]  # [n, L]
        source = np.where(in_first, (index * self.reuse_len)[:, None] + column,
                          b_begin[:, None] + column - first_len[:, None] - 1)  # [n, L]
        input_ids = ids[np.clip(source, 0, ids.size - 1)]  # [n, L]
        input_ids[column == first_len[:, None]] = SEP_ID
        input_ids[:, -2:] = (SEP_ID, CLS_ID)
        segment_ids = (column > first_len[:, None]).astype(np.int8)  # [n, L]
        segment_ids[:, -1] = 2
        return SegmentBatch(index=index, input_ids=input_ids, segment_ids=segment_ids,
                            label=label, a_end=a_end)
