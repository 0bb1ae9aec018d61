import numpy as np
import pytest

from preprocessing.corpus_reader import Document
from preprocessing.segmenter import cut_points
from document_streams import TokenizedDocument, build_stream, tokenize_document
from preprocessing.stream_builder import (StreamAssigner, block_tokens_for, check_stream_lengths,
                                          document_blocks, tokenize_documents)
from preprocessing.token_store import (parked_counts, parked_ranges, read_parked, read_store,
                                       write_store)
from tests.text_corpus import train_tiny_tokenizer
from xlnet.errors import UserError
from xlnet.schema import EOD_ID
from xlnet.tokenizer import Tokenizer


def _document(key, line_lengths, first_id=10):
    ids = np.arange(first_id, first_id + sum(line_lengths), dtype=np.int32)
    return TokenizedDocument(key=key, ids=ids, line_lengths=np.array(line_lengths),
                             lines=len(line_lengths))


def test_every_line_start_is_a_cut_point_but_eod_is_glued():
    # Lines of 3, 2 and 2 tokens; the last line's count includes the <eod> (Q7).
    first = _document((0, 0), [3, 2, 2])
    second = _document((0, 99), [2, 1], first_id=50)
    ids, sent_ids = build_stream([first, second])
    assert ids.tolist() == first.ids.tolist() + second.ids.tolist()
    assert cut_points(sent_ids).tolist() == [3, 5, 7, 9]


def test_tokenized_document_ends_with_one_eod(tmp_path):
    model = train_tiny_tokenizer(str(tmp_path / "c"), str(tmp_path / "m"))
    tokenizer = Tokenizer.load(model)
    document = Document(key=(0, 0), lines=["ka lo mi.", "\u0301", "ne ru."])
    tokenized = tokenize_document(tokenizer, document, use_eod=True)
    assert tokenized.ids[-1] == EOD_ID and (tokenized.ids == EOD_ID).sum() == 1
    assert tokenized.line_lengths.size == 2  # the line that encodes to nothing is dropped
    assert tokenized.line_lengths.sum() == tokenized.ids.size
    without = tokenize_document(tokenizer, document, use_eod=False)
    assert EOD_ID not in without.ids
    assert tokenize_document(tokenizer, Document((0, 5), ["\u0301"]), True) is None


def test_choices_that_differ_from_the_original_on_real_world_text(tmp_path):
    """The README's quirk table: k blank lines in a row end a document with one <eod> (the
    original emits k); a line that encodes to no piece (\u200b) is dropped, so the sentence
    ids alternate over the lines that remain (the original's counter flips on it too)."""
    from preprocessing.corpus_reader import match_input_files, plan_ranges, read_documents

    tokenizer = Tokenizer.load(train_tiny_tokenizer(str(tmp_path / "c"), str(tmp_path / "m")))
    assert tokenizer.encode("\u200b").size == 0
    path = tmp_path / "a.txt"
    path.write_text("ka lo.\n\n \n\xa0\nmi ne.\n\u200b\nru sa.\n")
    documents = [d for pieces in plan_ranges(match_input_files(str(path))) for piece in pieces
                 for d in read_documents(piece)]
    tokenized = [tokenize_document(tokenizer, d, use_eod=True) for d in documents]
    assert [d.lines for d in tokenized] == [1, 3]
    ids, sent_ids = build_stream(tokenized)
    assert (ids == EOD_ID).sum() == 2  # one per document; the original: 3, then none at the end
    second = tokenized[1]
    assert second.line_lengths.size == 2  # "mi ne." and "ru sa."; \u200b dropped
    first_line_end = tokenized[0].ids.size + second.line_lengths[0]
    assert sent_ids[first_line_end - 1] != sent_ids[first_line_end]  # mi ne. | ru sa.


def test_assignment_is_balanced_complete_and_does_not_depend_on_batching():
    lengths = np.random.default_rng(0).integers(5, 400, size=500)
    assigner = StreamAssigner(16)
    streams = assigner.assign(lengths)
    loads = assigner.stream_tokens()
    assert streams.min() == 0 and streams.max() == 15
    for stream in range(16):
        assert loads[stream] == lengths[streams == stream].sum()
    assert loads.max() - loads.min() <= lengths.max()
    in_parts = StreamAssigner(16)
    parts = [in_parts.assign(part) for part in np.split(lengths, [3, 100, 101, 350])]
    assert (np.concatenate(parts) == streams).all()
    assert (in_parts.stream_tokens() == loads).all()


def test_corpus_too_small_for_the_streams_is_a_user_error():
    assigner = StreamAssigner(4)
    assigner.assign(np.full(10, 100))
    loads = assigner.stream_tokens()
    check_stream_lengths(loads, 200, 4)
    with pytest.raises(UserError, match="too few for 4 streams.*lower data.num_streams"):
        check_stream_lengths(loads, 300, 4)


@pytest.mark.parametrize("use_eod", [True, False])
def test_a_range_tokenized_at_once_equals_each_document_and_parks_them(tmp_path, use_eod):
    model = train_tiny_tokenizer(str(tmp_path / "c"), str(tmp_path / "m"))
    tokenizer = Tokenizer.load(model)
    documents = [Document((0, 0), ["ka lo mi.", "", "ne ru."]), Document((0, 20), ["\u0301"]),
                 Document((0, 30), ["mi."]), Document((0, 40), ["", "lo ka, 12,345, ne", "x"])]
    each = [tokenize_document(tokenizer, d, use_eod) for d in documents]
    each = [d for d in each if d is not None]
    tokenized = tokenize_documents(tokenizer, documents, use_eod)
    assert tokenized.document_tokens.tolist() == [d.ids.size for d in each]
    assert tokenized.ids.tolist() == [i for d in each for i in d.ids.tolist()]
    assert tokenized.line_lengths.tolist() == [n for d in each for n in d.line_lengths.tolist()]
    write_store(str(tmp_path), "train", 3, tokenized, block_tokens=1)  # a block per document
    parked = read_parked(str(tmp_path), "train", 3)
    ids, line_lengths = read_store(str(tmp_path), "train", parked.select(np.array([2, 0, 1])))
    expected = [each[2], each[0], each[1]]
    assert ids.tolist() == [i for d in expected for i in d.ids.tolist()]
    assert line_lengths.tolist() == [n for d in expected for n in d.line_lengths.tolist()]
    write_store(str(tmp_path), "train", 4, tokenized, block_tokens=1000)  # one block
    assert sorted(parked_ranges(str(tmp_path))) == [("train", 3), ("train", 4)]
    for range_index in (3, 4):
        assert parked_counts(str(tmp_path), "train", range_index) == (len(each),
                                                                      tokenized.ids.size)
    parked = read_parked(str(tmp_path), "train", 4)
    assert parked.tokens.tolist() == [tokenized.ids.size]
    ids, line_lengths = read_store(str(tmp_path), "train", parked)
    assert ids.tolist() == tokenized.ids.tolist()
    assert line_lengths.tolist() == tokenized.line_lengths.tolist()


def test_block_size_keeps_a_stream_to_a_few_hundred_blocks():
    assert block_tokens_for(70 << 20, num_streams=160, seq_len=512) == 512  # the benchmark
    ten_gigabytes = block_tokens_for(10 << 30, num_streams=512, seq_len=512)
    assert ten_gigabytes > 512
    stream_tokens = (10 << 30) // 4 // 512
    assert 200 < stream_tokens / ten_gigabytes <= 256


def test_blocks_are_runs_of_documents_starting_in_one_window():
    document_tokens = np.array([5, 3, 4, 10, 1, 1, 30, 2])  # first tokens 0 5 8 12 22 23 24 54
    assert document_blocks(document_tokens, 10).tolist() == [0, 0, 0, 1, 2, 2, 2, 3]
    assert document_blocks(document_tokens, 1).tolist() == list(range(8))
    assert document_blocks(np.zeros(0, np.int64), 10).tolist() == []
