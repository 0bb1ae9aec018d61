"""Cuts one stream into examples exactly as the original writing loop does (original-xlnet.md
§3.1-§3.3).

Segment k starts at stream offset k*R: its reuse part is stream[k*R : k*R+R], directly followed
by A; B is the true continuation (label 1) or a random span of the same stream (label 0), with
the original's cases, trimming and quirks (Q9). Python's unseeded `random` is replaced by three
seeded uniform draws per segment (Q3), so a batch of segments splits at once. Targets are not
stored (target = input, §5.4), so the split never needs the token after B and cannot fail
(Q14 does not arise): a stream of T >= L tokens gives (T - L) // R + 1 segments and drops
fewer than L tokens at its end.
"""

import dataclasses

import numpy as np

from xlnet.schema import CLS_ID, SEP_ID


def cut_points(sent_ids):
    """Offsets k with sent_ids[k] != sent_ids[k-1], ascending."""
    return np.flatnonzero(sent_ids[1:] != sent_ids[:-1]) + 1


def trim_to_total(a_len, b_len, total):
    """§3.2 step 6 in closed form, elementwise: shorten the longer part (ties: B) until
    a + b = total. Returns (a_len, b_len)."""
    excess = np.maximum(a_len + b_len - total, 0)
    a_step = np.minimum(np.maximum(a_len - b_len, 0), excess)  # A longer: trim it to B's length
    b_step = np.minimum(np.maximum(b_len - a_len, 0), excess)
    a_len, b_len, excess = a_len - a_step, b_len - b_step, excess - a_step - b_step
    return a_len - excess // 2, b_len - (excess + 1) // 2  # then alternately, B first


def split_a_b(cuts, length, begins, total, draws):
    """§3.2 for the segments whose A starts at `begins` [n], at once.

    `cuts` are the stream's cut points, `length` its token count T, `total` = L - R - 3.
    `draws` [n, 3] are uniform in [0, 1), one row per segment, in place of the original's
    random() (true B when >= 0.5), choice(cuts) and randint(0, T - 1 - b_len).
    Returns (a_end, b_begin, b_end, label), [n] each: A = stream[begin:a_end],
    B = stream[b_begin:b_end].
    """
    cuts = np.append(cuts, length)  # [C + 1]: the scan runs out at T
    first = np.searchsorted(cuts, begins + 1)  # [n]: the first cut after begin
    stop = np.searchsorted(cuts, begins + total)  # [n]: the first cut `total` or more away
    candidates = stop - first  # [n]: cut points closer than `total` to begin
    end = cuts[stop]  # [n]
    chosen_cut = cuts[first + (draws[:, 1] * candidates).astype(np.int64)]  # [n]
    true_b = (candidates > 0) & (draws[:, 0] >= 0.5)  # [n]
    a_end = np.where(candidates > 0, chosen_cut, end)
    # Random B: anywhere in the stream, widened to whole sentences.
    b_len = np.maximum(1, total - (a_end - begins))
    b_begin = (draws[:, 2] * (length - b_len)).astype(np.int64)
    sentence = np.searchsorted(cuts, b_begin, side="right") - 1  # [n]: -1 in the first one
    random_begin = np.where(sentence >= 0, cuts[np.maximum(sentence, 0)], 0)
    random_end = np.minimum(cuts[np.searchsorted(cuts, b_begin + b_len)], length - 1)
    b_begin = np.where(true_b, a_end, random_begin)
    b_end = np.where(true_b, end, random_end)
    a_len, b_len = trim_to_total(a_end - begins, b_end - b_begin, total)
    return begins + a_len, b_begin, b_begin + b_len, true_b.astype(np.int64)


@dataclasses.dataclass
class SegmentBatch:
    """Consecutive Segments as arrays."""
    index: np.ndarray  # [n]
    input_ids: np.ndarray  # [n, L] int32
    segment_ids: np.ndarray  # [n, L] int8
    label: np.ndarray  # [n]
    a_end: np.ndarray  # [n]


class Segmenter:
    """Cuts one stream into SegmentBatches, in order."""

    def __init__(self, seq_len, reuse_len):
        self.seq_len = seq_len
        self.reuse_len = reuse_len
        self.total = seq_len - reuse_len - 3  # |A| + |B|

    def num_segments(self, length):
        return 0 if length < self.seq_len else (length - self.seq_len) // self.reuse_len + 1

    def batches(self, ids, sent_ids, rng, batch_size):
        """SegmentBatches of up to `batch_size` consecutive segments, in order."""
        cuts = cut_points(sent_ids)
        count = self.num_segments(ids.size)
        for first in range(0, count, batch_size):
            index = np.arange(first, min(first + batch_size, count))  # [n]
            draws = rng.random((index.size, 3))  # [n, 3]
            a_end, b_begin, _, label = split_a_b(cuts, ids.size, (index + 1) * self.reuse_len,
                                                 self.total, draws)
            yield self._layout(index, ids, a_end, b_begin, label)

    def _layout(self, index, ids, a_end, b_begin, label):
        """[reuse part][A]<sep>[B]<sep><cls> of each segment; B always ends at L - 3."""
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
