import gzip

import numpy as np
import pytest

from preprocessing import corpus_reader
from preprocessing.corpus_reader import (match_input_files, plan_ranges, read_documents)
from xlnet.errors import UserError

TEXT = (b"first doc line one\nline two\n\n\n  \nsecond doc\r\n\nthird \xff\xfe bad\nthird ok\n"
        b"\n\t\nfourth\nfourth b\nfourth c")


def _read_all(files, range_bytes):
    return [d for pieces in plan_ranges(files, range_bytes) for piece in pieces
            for d in read_documents(piece)]


def _summary(documents):
    return [(d.key, d.lines, d.non_utf8_lines, d.overlong_lines) for d in documents]


def test_documents_are_split_on_blank_lines(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(TEXT)
    documents = _read_all(match_input_files(str(path)), 1 << 20)
    assert [d.lines for d in documents] == [["first doc line one", "line two"], ["second doc"],
                                           ["third ok"], ["fourth", "fourth b", "fourth c"]]
    assert [d.non_utf8_lines for d in documents] == [0, 0, 1, 0]
    assert [d.key for d in documents] == [(0, 0), (0, TEXT.index(b"second")),
                                          (0, TEXT.index(b"third")), (0, TEXT.index(b"fourth"))]


@pytest.mark.parametrize("range_bytes", [1, 2, 3, 5, 7, 11, 16, 40])
def test_any_range_size_reads_each_document_once_and_whole(tmp_path, range_bytes):
    path = tmp_path / "a.txt"
    path.write_bytes(TEXT * 3)
    files = match_input_files(str(path))
    assert _summary(_read_all(files, range_bytes)) == _summary(_read_all(files, 1 << 20))


def test_gzip_reads_like_plain(tmp_path):
    (tmp_path / "a.txt").write_bytes(TEXT)
    with gzip.open(tmp_path / "b.txt.gz", "wb") as f:
        f.write(TEXT)
    files = match_input_files(str(tmp_path / "*"))
    for range_bytes in (5, 1 << 20):  # the gzip file alone, or packed with the plain one
        documents = _read_all(files, range_bytes)
        plain = [d for d in documents if d.key[0] == 0]
        zipped = [d for d in documents if d.key[0] == 1]
        assert plain and [(d.key[1], d.lines) for d in plain] == [(d.key[1], d.lines)
                                                                   for d in zipped]
    assert len(corpus_reader.plan_ranges(files, 1 << 20)) == 1


def test_a_50_megabyte_line_is_skipped_and_counted(tmp_path):
    path = tmp_path / "long.txt"
    with open(path, "wb") as f:
        f.write(b"before\n")
        f.write(b"x" * (50 << 20))
        f.write(b"\nafter\n\nnext doc\n")
    documents = _read_all(match_input_files(str(path)), 8 << 20)
    assert [d.lines for d in documents] == [["before", "after"], ["next doc"]]
    assert documents[0].overlong_lines == 1
    assert corpus_reader.MAX_LINE_BYTES < (50 << 20)


def test_a_line_holding_a_nul_byte_is_skipped_and_counted(tmp_path):
    path = tmp_path / "nul.txt"
    path.write_bytes(b"text before\n\x00\x01binary\nmore text\n\nnext doc\n")
    documents = _read_all(match_input_files(str(path)), 1 << 20)
    assert [d.lines for d in documents] == [["text before", "more text"], ["next doc"]]
    assert [d.nul_lines for d in documents] == [1, 0]


def test_empty_glob_and_empty_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no files match"):
        match_input_files(str(tmp_path / "*.txt"))
    (tmp_path / "a.txt").write_bytes(b"")
    (tmp_path / "b.txt").write_bytes(b"")
    with pytest.raises(UserError, match="all 2 matching files are empty"):
        match_input_files(str(tmp_path / "*.txt"))


@pytest.mark.parametrize("name,content,message", [
    ("utf16.txt", "ka lo\n".encode("utf-16"), "starts with a UTF-16LE byte order mark"),
    ("utf16be.txt", b"\xfe\xff" + "ka\n".encode("utf-16-be"), "a UTF-16BE byte order mark"),
    ("utf32.txt", "ka lo\n".encode("utf-32"), "starts with a UTF-32LE byte order mark"),
    ("utf16.txt.gz", gzip.compress("ka lo\n".encode("utf-16")), "a UTF-16LE byte order mark"),
    ("broken.txt.gz", b"not gzip at all", "cannot be read as gzip"),
])
def test_files_that_are_not_utf8_text_are_refused_before_the_job(tmp_path, name, content,
                                                                 message):
    (tmp_path / "good.txt").write_bytes("\ufeffa UTF-8 mark is fine.\n".encode())
    (tmp_path / name).write_bytes(content)
    match_input_files(str(tmp_path / "good.txt"))
    with pytest.raises(UserError, match=message) as error:
        match_input_files(str(tmp_path / "*"))
    assert str(error.value).startswith(str(tmp_path / name))


@pytest.mark.parametrize("block_bytes", [1, 2, 5, 9, 64])
def test_block_size_changes_nothing_at_line_limits(tmp_path, monkeypatch, block_bytes):
    path = tmp_path / "a.txt"
    path.write_bytes(TEXT + b"\n\n" + b"y" * 10 + b"\nok\n" + b"z" * 11 + b"\n\n" + b"w" * 30)
    files = match_input_files(str(path))
    monkeypatch.setattr(corpus_reader, "MAX_LINE_BYTES", 10)
    expected = _summary(_read_all(files, 1 << 20))
    assert expected[-2:] == [((0, TEXT.index(b"fourth c") + 10), ["y" * 10, "ok"], 0, 1),
                             ((0, path.stat().st_size - 30), [], 0, 1)]
    monkeypatch.setattr(corpus_reader, "_BLOCK_BYTES", block_bytes)
    assert _summary(_read_all(files, 1 << 20)) == expected
    assert _summary(_read_all(files, 7)) == expected


def test_ranges_cut_big_files_and_pack_small_ones():
    files = [("a.txt", 2500), ("b.txt", 300), ("c.txt", 0), ("d.txt", 400), ("e.txt.gz", 5000),
             ("f.txt", 100)]
    ranges = corpus_reader.plan_ranges(files, range_bytes=1000)
    summary = [[(r.file_index, r.start, r.end) for r in pieces] for pieces in ranges]
    assert summary == [[(0, 0, 1000)], [(0, 1000, 2000)], [(0, 2000, 2500), (1, 0, 300)],
                       [(3, 0, 400)], [(4, 0, -1)], [(5, 0, 100)]]


def test_a_file_without_blank_lines_is_one_document_whatever_the_ranges(tmp_path):
    path = tmp_path / "one.txt"
    path.write_bytes(b"".join(b"sentence %d\n" % i for i in range(3000)))
    files = match_input_files(str(path))
    documents = _read_all(files, 1000)
    assert len(documents) == 1 and len(documents[0].lines) == 3000
    later = corpus_reader.plan_ranges(files, 1000)[5][0]
    assert list(read_documents(later)) == []


# Lines the original counts as blank (`not line.strip()`, §1.4) though bytes.strip() does not.
UNICODE_BLANK_LINES = ["\xa0", "\u3000", "\x85", "\x1c", "\x1d", "\x1e", "\x1f", "\u2028",
                       " \xa0\t\u3000 \x1f"]


@pytest.mark.parametrize("blank", UNICODE_BLANK_LINES, ids=ascii)
def test_a_line_of_unicode_or_control_whitespace_ends_a_document(tmp_path, blank):
    path = tmp_path / "a.txt"
    path.write_bytes(f"one a\none b\n{blank}\ntwo\n".encode())
    documents = _read_all(match_input_files(str(path)), 1 << 20)
    assert [d.lines for d in documents] == [["one a", "one b"], ["two"]]


def original_documents(text):
    """The original's reading of a text: a line whose str.strip() is empty ends a document."""
    documents, current = [], []
    for line in text.split("\n"):
        if line.strip():
            current.append(line)
        elif current:
            documents.append(current)
            current = []
    return documents + ([current] if current else [])


@pytest.mark.parametrize("range_bytes", [1, 2, 3, 5, 8, 13, 1 << 20])
def test_documents_follow_the_originals_blank_lines_for_any_ranges(tmp_path, range_bytes):
    rng = np.random.default_rng(range_bytes)
    kinds = UNICODE_BLANK_LINES + ["", " ", "\t", "\u200b", "é à", "ka lo", "\xa0mi\xa0",
                                   "\x1cne", "ru"]
    text = "\n".join(str(rng.choice(kinds)) for _ in range(300))
    path = tmp_path / "a.txt"
    path.write_bytes(text.encode())
    documents = _read_all(match_input_files(str(path)), range_bytes)
    assert [d.lines for d in documents] == original_documents(text)
    # keys are the byte offsets of each document's first line
    encoded = text.encode()
    for document in documents:
        assert encoded[document.key[1]:].startswith(document.lines[0].encode())
