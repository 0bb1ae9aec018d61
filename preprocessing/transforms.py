"""The Beam job's PTransforms. Elements are file ranges, documents and streams, never lines or
tokens (Beam costs ~15 µs per element)."""

import collections

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import window

from preprocessing.corpus_reader import read_documents
from preprocessing.stream_builder import (assign_streams, build_stream, check_stream_lengths,
                                          tokenize_document)
from preprocessing.stream_writer import StreamWriter
from xlnet.errors import UserError
from xlnet.tokenizer import Tokenizer

COUNTER_NAMESPACE = "xlnet.prepare"
DOCUMENT_STATS = "document_stats"


def _counter(name):
    return Metrics.counter(COUNTER_NAMESPACE, name)


def load_checked_tokenizer(path, sha256, uncased):
    tokenizer = Tokenizer.load(path, uncased=uncased)
    if tokenizer.sha256 != sha256:
        raise UserError(f"{path}: the tokenizer file changed while the job ran; run it again")
    return tokenizer


class ReadDocuments(beam.PTransform):
    """FileRanges -> Documents; ranges are redistributed first so big files spread out."""

    def __init__(self, file_ranges):
        super().__init__()
        self.file_ranges = file_ranges

    def expand(self, pbegin):
        return (pbegin
                | "FileRanges" >> beam.Create(self.file_ranges)
                | "SpreadRanges" >> beam.Reshuffle()
                | "Documents" >> beam.FlatMap(read_documents))


class _TokenizeFn(beam.DoFn):
    def __init__(self, tokenizer_path, tokenizer_sha256, uncased, use_eod):
        self.tokenizer_path = tokenizer_path
        self.tokenizer_sha256 = tokenizer_sha256
        self.uncased = uncased
        self.use_eod = use_eod
        self.counters = {name: _counter(name) for name in (
            "documents", "empty_documents", "lines", "tokens", "skipped_lines_non_utf8",
            "skipped_lines_over_1MiB")}

    def setup(self):
        self.tokenizer = load_checked_tokenizer(self.tokenizer_path, self.tokenizer_sha256,
                                                self.uncased)

    def start_bundle(self):
        self.stats = collections.Counter()

    def process(self, document):
        counts = {"documents": 1, "lines": len(document.lines) + document.non_utf8_lines
                  + document.overlong_lines,
                  "skipped_lines_non_utf8": document.non_utf8_lines,
                  "skipped_lines_over_1MiB": document.overlong_lines}
        tokenized = tokenize_document(self.tokenizer, document, self.use_eod)
        if tokenized is None:
            counts["empty_documents"] = 1
        else:
            counts["tokens"] = int(tokenized.ids.size)
            yield tokenized
        for name, value in counts.items():
            self.counters[name].inc(value)
        self.stats.update(counts)

    def finish_bundle(self):
        # Statistics travel as data (one element per bundle), so stats.json needs no runner
        # support for querying metrics.
        yield beam.pvalue.TaggedOutput(
            DOCUMENT_STATS, window.GlobalWindows.windowed_value(dict(self.stats)))


class TokenizeDocuments(beam.PTransform):
    """Documents -> TokenizedDocuments (main output) and per-bundle counts (DOCUMENT_STATS)."""

    def __init__(self, tokenizer_path, tokenizer_sha256, uncased, use_eod):
        super().__init__()
        self.fn = _TokenizeFn(tokenizer_path, tokenizer_sha256, uncased, use_eod)

    def expand(self, documents):
        return documents | "Encode" >> beam.ParDo(self.fn).with_outputs(
            DOCUMENT_STATS, main="documents")


def _sum_counts(dicts):
    total = collections.Counter()
    for counts in dicts:
        total.update(counts)
    return dict(total)


class SumCounts(beam.PTransform):
    def expand(self, counts):
        return counts | "Sum" >> beam.CombineGlobally(_sum_counts)


def _document_length(document):
    return document.key, int(document.ids.size)


def _keyed_by_document(document):
    return document.key, document


def _assign(document_lengths, num_streams, seq_len, seed):
    assignment, stream_tokens = assign_streams(document_lengths, num_streams, seed)
    check_stream_lengths(stream_tokens, seq_len, num_streams)
    for key, stream, order in assignment:
        yield key, (stream, order)


def _keyed_by_stream(joined):
    _, groups = joined
    (stream, order), = groups["slot"]
    for document in groups["document"]:
        yield stream, (order, document)


class GroupIntoStreams(beam.PTransform):
    """TokenizedDocuments -> (stream, [(order, document)]), balanced by length (§2).

    Only (key, length) pairs meet in one place; the documents themselves are joined with
    their slots by key, so no worker holds more than one stream's documents.
    """

    def __init__(self, num_streams, seq_len, seed):
        super().__init__()
        self.num_streams = num_streams
        self.seq_len = seq_len
        self.seed = seed

    def expand(self, documents):
        slots = (documents
                 | "Lengths" >> beam.Map(_document_length)
                 | "CollectLengths" >> beam.combiners.ToList()
                 | "Assign" >> beam.FlatMap(_assign, self.num_streams, self.seq_len,
                                            self.seed))
        keyed = documents | "KeyByDocument" >> beam.Map(_keyed_by_document)
        return ({"document": keyed, "slot": slots}
                | "JoinSlots" >> beam.CoGroupByKey()
                | "KeyByStream" >> beam.FlatMap(_keyed_by_stream)
                | "GroupStreams" >> beam.GroupByKey())


class _WriteStreamFn(beam.DoFn):
    def __init__(self, data_config, tokenizer_path, tokenizer_sha256, output_dir):
        self.data_config = data_config
        self.tokenizer_path = tokenizer_path
        self.tokenizer_sha256 = tokenizer_sha256
        self.output_dir = output_dir
        self.segments = _counter("segments")
        self.streams = _counter("stream_files")

    def setup(self):
        tokenizer = load_checked_tokenizer(self.tokenizer_path, self.tokenizer_sha256,
                                           self.data_config.uncased)
        self.writer = StreamWriter(self.data_config, tokenizer.start_piece_table,
                                   self.output_dir)

    def process(self, stream_documents):
        stream, ordered = stream_documents
        documents = [document for _, document in sorted(ordered, key=lambda od: od[0])]
        ids, sent_ids = build_stream(documents)
        directions = [(stream, False, ids, sent_ids)]
        if self.data_config.bi_data:
            directions.append((self.data_config.num_streams + stream, True, ids[::-1].copy(),
                               sent_ids[::-1].copy()))
        for pass_index in range(self.data_config.num_passes):
            for stream_id, reverse, stream_ids, stream_sent_ids in directions:
                entry, stats = self.writer.write(stream_ids, stream_sent_ids, stream_id,
                                                 reverse, pass_index)
                self.segments.inc(entry["examples"])
                self.streams.inc()
                yield pass_index, entry, stats


class WriteStreams(beam.PTransform):
    """(stream, documents) -> stream files of every pass; yields (pass, entry, stats)."""

    def __init__(self, data_config, tokenizer_path, tokenizer_sha256, output_dir):
        super().__init__()
        self.fn = _WriteStreamFn(data_config, tokenizer_path, tokenizer_sha256, output_dir)

    def expand(self, streams):
        return streams | "Write" >> beam.ParDo(self.fn)


class FinalizeDataset(beam.PTransform):
    """After every stream file: stats.json, dataset_info.json, then COMPLETED."""

    def __init__(self, finalize):
        super().__init__()
        self.finalize = finalize  # callable(file_results, document_stats)

    def expand(self, inputs):
        file_results, document_stats = inputs
        return (file_results
                | "CollectFiles" >> beam.combiners.ToList()
                | "WriteInfo" >> beam.Map(self.finalize,
                                          beam.pvalue.AsSingleton(document_stats)))
