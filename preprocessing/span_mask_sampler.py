"""Span masks for one half of an example (spec §4), pure numpy.

span_unit="token" is the original algorithm (§4.2) including QUIRK Q1 (a span covers n pieces
and may end mid-word) and Q12 (a span must end before the segment's last position).
span_unit="word" covers n whole words instead and is cut where the goal is reached.
Both finish with the uniform fill, so every mask holds exactly `goal` positions. The fill
draws distinct free positions at once (the same distribution as the original's retry loop),
so no configuration can make the sampler loop: it refuses a goal larger than the segment.
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

    def span_length_probabilities(self):
        return np.diff(self._cdf, prepend=0.0)

    def sample(self, tokens, goal, reverse, rng):
        """Returns (mask [S] bool, spans [(begin, end)] in `tokens` order)."""
        size = len(tokens)
        if goal > size:
            raise ValueError(f"mask goal {goal} exceeds the segment's {size} positions")
        tokens = np.asarray(tokens)
        if reverse:
            tokens = tokens[::-1]  # restores forward reading order for backward rows
        is_start = self.start_piece_table[tokens]  # [S]
        mask = np.zeros(size, dtype=bool)  # [S]
        spans = self._sample_spans(is_start, goal, rng)
        for begin, end in spans:
            mask[begin:end] = True
        count = int(mask.sum())
        if count < goal:
            free = np.flatnonzero(~mask)
            # A uniformly random subset of the free positions: the k smallest of random keys.
            chosen = np.argpartition(rng.random(free.size), goal - count - 1)[:goal - count]
            mask[free[chosen]] = True
        if reverse:
            mask = mask[::-1]
            spans = [(size - end, size - begin) for begin, end in spans]
        return mask, spans

    def _sample_spans(self, is_start, goal, rng):
        size = is_start.size
        starts = np.flatnonzero(is_start) if self.span_unit == "word" else None
        next_start = self._next_start(is_start).tolist()  # [S + 1], Python ints for the loop
        # Every accepted span adds >= 1 to the count, so goal + 1 draws always suffice.
        lengths = np.searchsorted(self._cdf, rng.random(goal + 1), side="right") + 1
        context_draws = rng.random(goal + 1)
        spans, count, cursor = [], 0, 0
        for length, context_draw in zip(lengths.tolist(), context_draws.tolist()):
            if cursor >= size or count >= goal:
                break
            length = min(length, goal - count)
            context = max(1, length * self.alpha // self.beta)
            left_context = int(context_draw * context)
            begin = next_start[min(cursor + left_context, size)]
            if begin >= size:
                break
            end = self._span_end(begin, length, starts, size, goal - count)
            if end >= size:
                break
            spans.append((begin, end))
            count += end - begin
            cursor = end + context - left_context
        return spans

    def _span_end(self, begin, length, starts, size, remaining):
        if self.span_unit == "token":
            return begin + length
        word = np.searchsorted(starts, begin)
        word_end = int(starts[word + length]) if word + length < starts.size else size
        return min(word_end, begin + remaining)

    @staticmethod
    def _next_start(is_start):
        """next_start[k] = first start piece at or after k (S if none); next_start[S] = S."""
        size = is_start.size
        positions = np.where(is_start, np.arange(size), size)
        return np.append(np.minimum.accumulate(positions[::-1])[::-1], size)
