import numpy as np
import pytest

from preprocessing.span_mask_sampler import SpanMaskSampler

VOCAB = 100
# ids < 60 are word starts, the others continue a word
TABLE = np.arange(VOCAB) < 60


def sample_segments(sampler, tokens, goal, reverse, rng):
    """Whole segments [B, S] masked at once with one goal -> (masks [B, S] bool, spans (rows,
    begins, ends) [spans] each), span positions in `tokens` order (for reversed rows: of the
    reversed text). The job masks halves (`sample_halves`); this masks whole rows."""
    tokens = np.asarray(tokens)
    batch, size = tokens.shape
    if reverse:
        tokens = tokens[:, ::-1]  # restores forward reading order for backward rows
    sizes = np.full(batch, size)
    masks, (rows, begins, ends) = sampler.sample_rows(tokens, sizes, np.full(batch, goal), rng)
    masks = masks.reshape(batch, size)
    sampler.fill(masks, goal, rng)
    if reverse:
        masks = masks[:, ::-1]
        begins, ends = size - ends, size - begins
    order = np.lexsort((begins, rows))
    return masks, (rows[order], begins[order], ends[order])


def sample_segment(sampler, tokens, goal, reverse, rng):
    """One segment: (mask [S] bool, spans [(begin, end)] in `tokens` order)."""
    masks, (_, begins, ends) = sample_segments(sampler, np.asarray(tokens)[None, :], goal,
                                               reverse, rng)
    return masks[0], sorted(zip(begins.tolist(), ends.tolist()))


def _segment(rng, size, word_start_rate=0.5):
    starts = rng.random(size) < word_start_rate
    return np.where(starts, rng.integers(0, 60, size), rng.integers(60, VOCAB, size))


@pytest.mark.parametrize("span_unit", ["token", "word"])
def test_exact_goal_per_half(span_unit):
    sampler = SpanMaskSampler(TABLE, span_unit=span_unit)
    rng = np.random.default_rng(0)
    for trial in range(300):
        reverse = bool(trial % 2)
        first, _ = sample_segment(sampler, _segment(rng, 256), 43, reverse, rng)
        second, _ = sample_segment(sampler, _segment(rng, 256), 42, reverse, rng)
        assert first.sum() == 43 and second.sum() == 42  # 85 per example


@pytest.mark.parametrize("span_unit", ["token", "word"])
def test_spans_start_on_word_starts_in_reading_order(span_unit):
    sampler = SpanMaskSampler(TABLE, span_unit=span_unit)
    rng = np.random.default_rng(1)
    for trial in range(200):
        tokens = _segment(rng, 128, word_start_rate=0.4)
        _, spans = sample_segment(sampler, tokens, 21, False, rng)
        assert spans and all(TABLE[tokens[begin]] for begin, _ in spans)
        # A reversed row holds reversed text: its spans start on a word start read forward,
        # which is the span's last position in row order.
        _, spans = sample_segment(sampler, tokens, 21, True, rng)
        assert all(TABLE[tokens[end - 1]] for _, end in spans)
        if span_unit == "word":
            spans = sample_segment(sampler, tokens, 21, False, rng)[1]
            complete = [(b, e) for b, e in spans][:-1]
            assert all(e == 128 or TABLE[tokens[e]] for _, e in complete)  # whole words


def test_span_length_histogram_follows_one_over_n():
    sampler = SpanMaskSampler(np.ones(VOCAB, bool))
    rng = np.random.default_rng(2)
    counts = np.zeros(6)
    for _ in range(5):
        tokens = rng.integers(0, VOCAB, 60000)
        _, spans = sample_segment(sampler, tokens, 10000, False, rng)
        counts += np.bincount([e - b for b, e in spans], minlength=6)
    observed = counts[1:]
    expected = observed.sum() * np.array([60, 30, 20, 15, 12]) / 137
    chi_square = ((observed - expected) ** 2 / expected).sum()
    assert observed.sum() > 15000
    assert chi_square < 18.47  # df = 4, p = 0.001
    # A uniform length distribution would be rejected by the same test.
    uniform = np.full(5, observed.sum() / 5)
    assert ((observed - uniform) ** 2 / uniform).sum() > 1000


def test_masked_density_is_about_one_in_alpha_before_the_fill():
    sampler = SpanMaskSampler(np.ones(VOCAB, bool))
    rng = np.random.default_rng(3)
    span_tokens = 0
    for _ in range(200):
        _, spans = sample_segment(sampler, rng.integers(0, VOCAB, 512), 85, False, rng)
        span_tokens += sum(e - b for b, e in spans)
    assert 0.6 < span_tokens / (200 * 85) <= 1.0  # most targets come from spans, not the fill


def test_no_configuration_loops_forever():
    rng = np.random.default_rng(4)
    no_word_starts = SpanMaskSampler(np.zeros(VOCAB, bool))
    mask, spans = sample_segment(no_word_starts, rng.integers(0, VOCAB, 32), 10, False, rng)
    assert mask.sum() == 10 and spans == []
    everything = SpanMaskSampler(TABLE, alpha=1, beta=3)  # 6n // beta can be 0
    assert sample_segment(everything, _segment(rng, 16), 16, False, rng)[0].all()
    with pytest.raises(ValueError, match="exceeds"):
        sample_segment(everything, _segment(rng, 16), 17, False, rng)
    with pytest.raises(ValueError, match="span_unit"):
        SpanMaskSampler(TABLE, span_unit="sentence")


@pytest.mark.parametrize("goal", [12, 28, 32])
def test_the_fill_is_uniform_over_free_positions(goal):
    """Without word starts every masked position comes from the fill; half the rows already
    hold a span-like mask at 0..7 that the fill must leave alone and never count twice."""
    sampler = SpanMaskSampler(np.zeros(VOCAB, bool))
    rng = np.random.default_rng(11)
    masks = np.zeros((6000, 32), bool)
    masks[::2, :8] = True
    sampler.fill(masks, goal, rng)
    assert (masks.sum(axis=1) == goal).all() and masks[::2, :8].all()
    if goal == 32:
        return
    for hits, critical in ((masks[1::2].sum(axis=0), 61.1),  # rows that started empty
                           (masks[::2, 8:].sum(axis=0), 49.7)):  # the others' free positions
        expected = hits.sum() / hits.size
        assert ((hits - expected) ** 2 / expected).sum() < critical  # p = 0.001


def test_same_generator_state_same_mask():
    sampler = SpanMaskSampler(TABLE)
    tokens = _segment(np.random.default_rng(5), 256)
    a = sample_segment(sampler, tokens, 43, False, np.random.default_rng(7))
    b = sample_segment(sampler, tokens, 43, False, np.random.default_rng(7))
    assert (a[0] == b[0]).all() and a[1] == b[1]


@pytest.mark.parametrize("span_unit", ["token", "word"])
def test_batch_rows_each_get_the_goal_and_word_aligned_spans(span_unit):
    sampler = SpanMaskSampler(TABLE, span_unit=span_unit)
    rng = np.random.default_rng(8)
    tokens = np.stack([_segment(rng, 256, word_start_rate=0.3 + 0.005 * i) for i in range(64)])
    for reverse in (False, True):
        masks, (rows, begins, ends) = sample_segments(sampler, tokens, 43, reverse, rng)
        assert masks.shape == (64, 256) and (masks.sum(axis=1) == 43).all()
        assert sorted(set(rows.tolist())) == list(range(64))  # every row got spans
        for row, begin, end in zip(rows, begins, ends):
            assert masks[row, begin:end].all()
            assert TABLE[tokens[row, end - 1 if reverse else begin]]
    assert len({m.tobytes() for m in masks}) == 64


@pytest.mark.parametrize("span_unit", ["token", "word"])
def test_halves_of_unequal_length_each_get_their_goal(span_unit):
    sampler = SpanMaskSampler(TABLE, span_unit=span_unit)
    rng = np.random.default_rng(9)
    input_ids = np.stack([_segment(rng, 96) for _ in range(40)])  # [n, L], halves 32 + 64
    for reverse in (False, True):
        masks, (halves, begins, ends) = sampler.sample_halves(input_ids, 32, (9, 12), reverse,
                                                              rng)
        assert masks.shape == (40, 96)
        assert (masks[:, :32].sum(axis=1) == 9).all() and (masks[:, 32:].sum(axis=1) == 12).all()
        assert len(set(halves.tolist())) > 70  # nearly every half got spans
        for half, begin, end in zip(halves, begins, ends):
            first, last = (0, 32) if half % 2 == 0 else (32, 96)
            tokens, mask = input_ids[half // 2, first:last], masks[half // 2, first:last]
            if reverse:  # sampled on the half read backwards
                tokens, mask = tokens[::-1], mask[::-1]
            assert TABLE[tokens[begin]] and mask[begin:end].all()
            assert end - begin <= (5 if span_unit == "token" else 12)


def test_halves_refuse_a_goal_larger_than_their_half():
    sampler = SpanMaskSampler(TABLE)
    tokens = _segment(np.random.default_rng(10), 48)[None, :]
    with pytest.raises(ValueError, match="mask goal 17 exceeds the segment's 16"):
        sampler.sample_halves(tokens, 32, (10, 17), False, np.random.default_rng(0))


def test_halves_allow_an_empty_first_half():
    sampler = SpanMaskSampler(TABLE)
    tokens = np.stack([_segment(np.random.default_rng(12), 20) for _ in range(3)])
    for reverse in (False, True):
        masks, _ = sampler.sample_halves(tokens, 0, (0, 5), reverse, np.random.default_rng(0))
        assert (masks.sum(axis=1) == 5).all()
