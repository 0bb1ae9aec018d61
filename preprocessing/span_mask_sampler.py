"""Span masks for one half of an example (spec §4), pure numpy.

span_unit="token" is the original algorithm (§4.2) including QUIRK Q1 (a span covers n pieces
and may end mid-word) and Q12 (a span must end before the segment's last position).
span_unit="word" covers n whole words instead and is cut where the goal is reached.
Both finish with the uniform fill, so every mask holds exactly `goal` positions. The fill
draws distinct free positions at once (the same distribution as the original's retry loop),
so no configuration can make the sampler loop: it refuses a goal larger than the segment.

`sample_batch` runs the sequential algorithm for many segments in lockstep (one span of every
segment per numpy step), which is what makes it affordable per token.
"""

import numpy as np

SPAN_UNITS = ("token", "word")


class SpanMaskSampler:
    def __init__(self, start_piece_table, alpha=6, beta=1, max_gram=5, span_unit="token"):
        if span_unit not in SPAN_UNITS:
            raise ValueError(f"span_unit {span_unit!r} is not one of {SPAN_UNITS}")
        self.start_piece_table = np.asarray(start_piece_table, dtype=bool)  # [V]
        self.alpha = alpha
        self.beta = beta
        self.max_gram = max_gram
        self.span_unit = span_unit
        weights = 1.0 / np.arange(1, max_gram + 1)  # p(n) ∝ 1/n (§4.3)
        self._cdf = np.cumsum(weights / weights.sum())
        self._cdf[-1] = 1.0

    def sample(self, tokens, goal, reverse, rng):
        """One segment: (mask [S] bool, spans [(begin, end)] in `tokens` order)."""
        masks, (_, begins, ends) = self.sample_batch(np.asarray(tokens)[None, :], goal,
                                                     reverse, rng)
        return masks[0], sorted(zip(begins.tolist(), ends.tolist()))

    def sample_batch(self, tokens, goal, reverse, rng):
        """Segments [B, S] -> (masks [B, S] bool, spans (rows, begins, ends) [spans] each).

        Span positions are in `tokens` order (for reversed rows: of the reversed text).
        """
        tokens = np.asarray(tokens)
        batch, size = tokens.shape
        if goal > size:
            raise ValueError(f"mask goal {goal} exceeds the segment's {size} positions")
        if reverse:
            tokens = tokens[:, ::-1]  # restores forward reading order for backward rows
        is_start = self.start_piece_table[tokens]  # [B, S]
        rows, begins, ends = self._sample_spans(is_start, goal, rng)
        masks = self._span_masks(batch, size, rows, begins, ends)  # [B, S]
        self._fill(masks, goal, rng)
        if reverse:
            masks = masks[:, ::-1]
            begins, ends = size - ends, size - begins
        return masks, (rows, begins, ends)

    def _sample_spans(self, is_start, goal, rng):
        batch, size = is_start.shape
        row_index = np.arange(batch)
        next_start = self._next_start(is_start)  # [B, S + 1]
        start_positions, word_number = self._word_index(is_start)
        # Every accepted span adds >= 1 to the count, so goal + 1 steps always suffice.
        lengths = np.searchsorted(self._cdf, rng.random((goal + 1, batch)), side="right") + 1
        context_draws = rng.random((goal + 1, batch))
        count = np.zeros(batch, np.int64)
        cursor = np.zeros(batch, np.int64)
        active = np.ones(batch, bool)
        found = []
        for step in range(goal + 1):
            active &= (cursor < size) & (count < goal)
            if not active.any():
                break
            length = np.minimum(lengths[step], goal - count)
            context = np.maximum(1, length * self.alpha // self.beta)
            left_context = (context_draws[step] * context).astype(np.int64)
            begin = next_start[row_index, np.minimum(cursor + left_context, size)]
            active &= begin < size
            begin = np.minimum(begin, size - 1)
            if self.span_unit == "token":
                end = begin + length
            else:
                word_end = start_positions[row_index, word_number[row_index, begin] + length]
                end = np.minimum(word_end, begin + goal - count)
            active &= end < size
            found.append((row_index[active], begin[active], end[active]))
            count = np.where(active, count + end - begin, count)
            cursor = np.where(active, end + context - left_context, cursor)
        if not found:
            empty = np.zeros(0, np.int64)
            return empty, empty, empty
        rows, begins, ends = (np.concatenate(parts) for parts in zip(*found))
        order = np.lexsort((begins, rows))
        return rows[order], begins[order], ends[order]

    @staticmethod
    def _span_masks(batch, size, rows, begins, ends):
        change = np.zeros((batch, size + 1), np.int64)  # +1 where a span starts, -1 after it
        np.add.at(change, (rows, begins), 1)
        np.add.at(change, (rows, ends), -1)
        return np.cumsum(change[:, :size], axis=1) > 0

    @staticmethod
    def _fill(masks, goal, rng):
        """Adds uniformly chosen free positions until each row holds `goal`."""
        missing = goal - masks.sum(axis=1)  # [B]
        if not missing.any():
            return
        keys = rng.random(masks.shape)  # [B, S]
        keys[masks] = 2.0  # masked positions sort last
        masks |= smallest_keys(keys, missing)


    @staticmethod
    def _next_start(is_start):
        """next_start[b, k] = first start piece at or after k (S if none); [b, S] = S."""
        batch, size = is_start.shape
        positions = np.where(is_start, np.arange(size), size)
        following = np.minimum.accumulate(positions[:, ::-1], axis=1)[:, ::-1]
        return np.concatenate([following, np.full((batch, 1), size)], axis=1)

    def _word_index(self, is_start):
        """For word spans: start positions per row (padded with S) and each position's word."""
        if self.span_unit != "word":
            return None, None
        batch, size = is_start.shape
        word_number = np.cumsum(is_start, axis=1) - 1  # [B, S]: index of the word at k
        padded = np.full((batch, size + self.max_gram + 1), size, np.int64)
        rows, columns = np.nonzero(is_start)
        padded[rows, word_number[rows, columns]] = columns
        return padded, np.maximum(word_number, 0)


def smallest_keys(keys, counts):
    """For each row of keys [B, S], its `counts` [B] smallest, ties to the lower position:
    the first `counts` of a stable argsort, as a [B, S] bool mask. Sorting the values alone
    and comparing with the row's threshold is ~15x faster than a stable argsort."""
    rows = np.arange(keys.shape[0])
    ordered = np.sort(keys, axis=1)  # [B, S]
    threshold = np.where(counts > 0, ordered[rows, np.maximum(counts - 1, 0)], -np.inf)  # [B]
    below = keys < threshold[:, None]  # [B, S]
    tied = keys == threshold[:, None]  # [B, S]
    ties_taken = (counts - below.sum(axis=1))[:, None]  # [B, 1]
    return below | (tied & (np.cumsum(tied, axis=1) <= ties_taken))

