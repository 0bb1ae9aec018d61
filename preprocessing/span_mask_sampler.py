"""Span masks for one half of an example (original-xlnet.md §4), pure numpy.

span_unit="token" is the original algorithm (§4.2) including QUIRK Q1 (a span covers n pieces
and may end mid-word) and Q12 (a span must end before the segment's last position).
span_unit="word" covers n whole words instead and is cut where the goal is reached.
Both finish with the uniform fill, so every mask holds exactly `goal` positions. The fill
has a bounded number of steps, so no configuration can make the sampler loop: it refuses a
goal larger than the segment.

`sample_halves` runs the sequential algorithm for both halves of many examples in lockstep (one
span of every half per numpy step), which is what makes it affordable per token. Rows live in
one flat array, so halves of different lengths share every step.
"""

import numpy as np

from preprocessing.random_order import random_orders

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
        lengths = np.arange(max_gram + 1)
        # Context by span length. The original draws from range(0) and crashes when
        # n·alpha < beta; a context of 1 (no left context) keeps such settings usable.
        self._context = np.maximum(1, lengths * alpha // beta)  # [max_gram + 1]

    def sample_halves(self, input_ids, reuse_len, goals, reverse, rng):
        """Examples [n, L] -> (masks [n, L] bool, spans (halves, begins, ends) [spans] each).

        The first `reuse_len` positions of each row and the rest are masked separately, with
        goals (first, second). Half h of row i is half 2i + h; span positions count from the
        half's start in sampling order (for reversed rows: of the half read backwards)."""
        count, seq_len = input_ids.shape
        halves = ((0, reuse_len), (reuse_len, seq_len))
        tokens = _reverse_halves(input_ids, reuse_len) if reverse else input_ids  # [n, L]
        sizes = np.tile([reuse_len, seq_len - reuse_len], count)  # [2n]: halves in row order
        masks, spans = self.sample_rows(tokens, sizes, np.tile(goals, count), rng)
        masks = masks.reshape(count, seq_len)
        for (begin, end), goal in zip(halves, goals):
            self.fill(masks[:, begin:end], goal, rng)
        if reverse:
            masks = _reverse_halves(masks, reuse_len)
        return masks, spans

    def sample_rows(self, tokens, sizes, goals, rng):
        """Spans of consecutive rows of `tokens` (any shape, flattened) with `sizes` [rows] and
        `goals` [rows] -> (flat span mask, (rows, begins, ends) within each row)."""
        too_large = np.flatnonzero(goals > sizes)
        if too_large.size:
            row = too_large[0]
            raise ValueError(f"mask goal {goals[row]} exceeds the segment's {sizes[row]} "
                             "positions")
        is_start = self.start_piece_table[np.ravel(tokens)]  # [N]
        bases = np.cumsum(sizes) - sizes  # [rows]: where each row starts in the flat array
        rows, begins, ends = self._sample_spans(is_start, bases, sizes, goals, rng)
        span_sizes = ends - begins  # spans never overlap: the cursor moves past each
        within = np.arange(span_sizes.sum()) - np.repeat(np.cumsum(span_sizes) - span_sizes,
                                                          span_sizes)
        masks = np.zeros(is_start.size, bool)  # [N]
        masks[np.repeat(bases[rows] + begins, span_sizes) + within] = True
        return masks, (rows, begins, ends)

    def _sample_spans(self, is_start, bases, sizes, goals, rng):
        rows = sizes.size
        found_starts = np.flatnonzero(is_start)  # [m]: flat start positions
        # next_start[q]: index in `starts` of the first start at or after flat position q.
        next_start = np.repeat(np.arange(found_starts.size + 1), np.diff(
            found_starts, prepend=-1, append=is_start.size))  # [N + 1]
        # Padded so that a word span's end can look max_gram words on.
        starts = np.concatenate([found_starts, np.full(self.max_gram + 1, is_start.size)])
        # Every accepted span adds >= 1 to the count, so goal + 1 steps always suffice.
        steps = int(goals.max()) + 1
        lengths = np.searchsorted(self._cdf, rng.random((steps, rows)), side="right") + 1
        context_draws = rng.random((steps, rows))
        remaining = goals.astype(np.int64)  # [rows]
        cursor = np.zeros(rows, np.int64)  # [rows]
        active = np.ones(rows, bool)  # [rows]
        accepted, begins, ends = [], [], []  # per step: [rows] each
        for step in range(steps):
            active = active & (cursor < sizes) & (remaining > 0)
            if not active.any():
                break
            length = np.minimum(lengths[step], remaining)
            context = self._context[length]
            left_context = (context_draws[step] * context).astype(np.int64)
            start_index = next_start[bases + np.minimum(cursor + left_context, sizes)]
            begin = starts[start_index] - bases  # >= size when the row has no start left
            if self.span_unit == "token":
                end = begin + length
            else:
                word_end = np.minimum(starts[start_index + length] - bases, sizes)
                end = np.minimum(word_end, begin + remaining)
            active = active & (end < sizes)
            accepted.append(active)
            begins.append(begin)
            ends.append(end)
            remaining = np.where(active, remaining - (end - begin), remaining)
            cursor = np.where(active, end + context - left_context, cursor)
        if not accepted:
            empty = np.zeros(0, np.int64)
            return empty, empty, empty
        accepted = np.stack(accepted)  # [steps, rows]
        return np.nonzero(accepted)[1], np.stack(begins)[accepted], np.stack(ends)[accepted]

    @staticmethod
    def fill(masks, goal, rng):
        """Masks uniformly chosen free positions of `masks` [B, S] (a view, changed in place)
        until each row holds `goal`.

        As the original's retry loop: uniform draws, a draw that hits a masked position is
        skipped. A fixed number of draws per row serves nearly every row; a row they leave
        short takes the rest from a random order of its positions (still a uniform choice
        among the free ones), so nothing loops.
        """
        missing = goal - masks.sum(axis=1)  # [B]
        rows = np.flatnonzero(missing > 0)
        if not rows.size:
            return
        size = masks.shape[1]
        draws = rng.integers(0, size, size=(rows.size, 2 * int(missing.max()) + 8))  # [b, K]
        usable = ~masks[rows[:, None], draws] & ~_repeats_an_earlier_draw(draws)
        taken = usable & (np.cumsum(usable, axis=1) <= missing[rows, None])  # [b, K]
        masks[np.broadcast_to(rows[:, None], draws.shape)[taken], draws[taken]] = True
        short = rows[taken.sum(axis=1) < missing[rows]]
        if short.size:
            orders = random_orders(rng, short.size, size)  # [s, S]
            free = ~masks[short[:, None], orders]  # [s, S] in random order
            still_missing = goal - masks[short].sum(axis=1)  # [s]
            taken = free & (np.cumsum(free, axis=1) <= still_missing[:, None])
            masks[np.broadcast_to(short[:, None], orders.shape)[taken], orders[taken]] = True


def _repeats_an_earlier_draw(draws):
    """[b, K] positions -> [b, K] bool: the same position was drawn earlier in the row."""
    count = draws.shape[1]
    keys = np.sort(draws * count + np.arange(count), axis=1)  # by position, then draw order
    repeated = np.zeros(draws.shape, bool)
    later = (keys[:, 1:] // count) == (keys[:, :-1] // count)  # [b, K-1]
    rows = np.broadcast_to(np.arange(len(draws))[:, None], later.shape)
    repeated[rows[later], keys[:, 1:][later] % count] = True
    return repeated


def _reverse_halves(values, reuse_len):
    """Each row's first `reuse_len` positions and the rest reversed in place: [n, L] -> [n, L]."""
    return np.concatenate([values[:, :reuse_len][:, ::-1], values[:, reuse_len:][:, ::-1]],
                          axis=1)
