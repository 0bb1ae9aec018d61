"""The Beam job's PTransforms. Elements are file ranges and streams, never documents, lines or
tokens (Beam costs ~15 µs per element)."""

import collections

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from preprocessing.beam_files import load_tokenizer
from preprocessing.corpus_reader import read_documents
from preprocessing.dataset_dir import (DOCUMENT_TOKENS_LOG2, check_unknown_tokens,
                                       counts_by_file, in_file)
from preprocessing.stream_builder import (StreamAssigner, check_stream_lengths, held_out,
                                          sentence_stream, tokenize_documents)
from preprocessing.stream_writer import StreamWriter
from preprocessing.token_store import ParkedBlocks, read_parked, read_store, write_store
from xlnet.errors import UserError
from xlnet.schema import EVAL, TRAIN, UNK_ID

COUNTER_NAMESPACE = "xlnet.prepare"


def _counter(name):
    return Metrics.counter(COUNTER_NAMESPACE, name)


def load_checked_tokenizer(path, sha256, uncased):
    tokenizer = load_tokenizer(path, uncased=uncased)
    if tokenizer.sha256 != sha256:
        raise UserError(f"{path}: the tokenizer file changed while the job ran; run it again")
    return tokenizer


COUNT_NAMES = ("documents", "empty_documents", "lines", "tokens", "skipped_lines_non_utf8",
               "skipped_lines_over_1MiB", "skipped_lines_nul")


class _TokenizeRangeFn(beam.DoFn):
    """(range index, source split, FileRanges) -> ((split, range index), counts) per split:
    reads, holds documents out for the eval split, tokenizes, parks."""

    def __init__(self, tokenizer_path, tokenizer_sha256, data_config, block_tokens, output_dir):
        self.tokenizer_path = tokenizer_path
        self.tokenizer_sha256 = tokenizer_sha256
        self.uncased = data_config.uncased
        self.use_eod = data_config.use_eod
        self.eval_fraction = data_config.eval_fraction
        self.seed = data_config.seed
        self.block_tokens = block_tokens
        self.output_dir = output_dir
        self.counters = {(split, name): _counter(name if split == TRAIN else f"eval_{name}")
                         for split in (TRAIN, EVAL) for name in COUNT_NAMES}

    def setup(self):
        self.tokenizer = load_checked_tokenizer(self.tokenizer_path, self.tokenizer_sha256,
                                                self.uncased)

    def process(self, element):
        range_index, source_split, pieces = element
        documents = [d for piece in pieces for d in read_documents(piece)]
        if source_split == EVAL or not self.eval_fraction:
            by_split = {source_split: documents}
        else:
            chosen = held_out([d.key for d in documents], self.seed, self.eval_fraction)
            by_split = {TRAIN: [d for d, c in zip(documents, chosen) if not c],
                        EVAL: [d for d, c in zip(documents, chosen) if c]}
        for split, split_documents in by_split.items():
            counts = collections.Counter()
            for document in split_documents:
                counts["documents"] += 1
                skipped = {"non_utf8": document.non_utf8_lines,
                           "over_1MiB": document.overlong_lines, "nul": document.nul_lines}
                counts["lines"] += len(document.lines) + sum(skipped.values())
                for kind, lines in skipped.items():
                    if lines:
                        counts[f"skipped_lines_{kind}"] += lines
                        counts[in_file(source_split, document.key[0], kind)] += lines
            tokenized = tokenize_documents(self.tokenizer, split_documents, self.use_eod)
            counts["empty_documents"] = len(split_documents) - tokenized.document_tokens.size
            counts["tokens"] = tokenized.ids.size
            _count_tokens_by_file(counts, source_split, split_documents, tokenized)
            log2_lengths = np.log2(tokenized.document_tokens).astype(np.int64)  # lengths >= 1
            for bucket, count in enumerate(np.bincount(log2_lengths).tolist()):
                if count:
                    counts[f"{DOCUMENT_TOKENS_LOG2}{bucket}"] = count
            write_store(self.output_dir, split, range_index, tokenized, self.block_tokens)
            for name in COUNT_NAMES:
                self.counters[split, name].inc(counts[name])
            yield (split, range_index), dict(counts)


def _count_tokens_by_file(counts, source_split, documents, tokenized):
    """Adds each input file's tokens and `<unk>` tokens to `counts` (a range may hold several
    files)."""
    if not tokenized.document_tokens.size:
        return
    files = np.array([d.key[0] for d in documents], np.int64)[tokenized.documents]  # [D]
    starts = np.cumsum(tokenized.document_tokens) - tokenized.document_tokens  # [D]
    unknown = np.add.reduceat((tokenized.ids == UNK_ID).astype(np.int64), starts)  # [D]
    for file_index in np.unique(files).tolist():
        of_file = files == file_index
        counts[in_file(source_split, file_index, "tokens")] += int(
            tokenized.document_tokens[of_file].sum())
        counts[in_file(source_split, file_index, "unk")] += int(unknown[of_file].sum())


class TokenizeRanges(beam.PTransform):
    """(source split, FileRanges) -> ((split, range index), counts) per range and split; ranges
    are spread over the workers first, so one big file is tokenized by all of them."""

    def __init__(self, split_ranges, tokenizer_path, tokenizer_sha256, data_config,
                 block_tokens, output_dir):
        super().__init__()
        self.split_ranges = split_ranges
        self.fn = _TokenizeRangeFn(tokenizer_path, tokenizer_sha256, data_config, block_tokens,
                                   output_dir)

    def expand(self, pbegin):
        ranges = [(index, split, pieces) for index, (split, pieces)
                  in enumerate(self.split_ranges)]
        return (pbegin
                | "FileRanges" >> beam.Create(ranges)
                | "SpreadRanges" >> beam.Reshuffle()
                | "Tokenize" >> beam.ParDo(self.fn))


def _sum_counts(dicts):
    total = collections.Counter()
    for counts in dicts:
        total.update(counts)
    return dict(total)


def _split_counts(range_result):
    (split, _), counts = range_result
    return split, counts


class SumCounts(beam.PTransform):
    """((split, range index), counts) per range -> (split, the split's counts) per split."""

    def expand(self, range_results):
        return (range_results
                | "Counts" >> beam.Map(_split_counts)
                | "Sum" >> beam.CombinePerKey(_sum_counts))


_FLUSH_BLOCKS = 1 << 18  # locations held by the assignment step before it hands them on


def _assign(range_results, output_dir, split, num_streams, seq_len, unk_check=None):
    """Reads the split's ranges' indexes in corpus order; yields (stream, (part,
    ParkedBlocks)). With `unk_check` (max_unk_fraction, source files, eval source files), first
    refuses a corpus of too many `<unk>` tokens, before any stream is written."""
    if unk_check is not None:
        max_unk_fraction, source_files, eval_source_files = unk_check
        document_stats = {}
        for (result_split, _), counts in range_results:
            document_stats.setdefault(result_split, collections.Counter()).update(counts)
        check_unknown_tokens(counts_by_file(document_stats, source_files, eval_source_files),
                             max_unk_fraction)
    assigner = StreamAssigner(num_streams)
    pending, held, part = [], 0, 0
    for range_index in sorted(index for (result_split, index), _ in range_results
                              if result_split == split):
        parked = read_parked(output_dir, split, range_index)
        pending.append((parked, assigner.assign(parked.tokens)))
        held += parked.tokens.size
        if held >= _FLUSH_BLOCKS:
            yield from _stream_parts(pending, part, num_streams)
            pending, held, part = [], 0, part + 1
    yield from _stream_parts(pending, part, num_streams)
    if split == TRAIN:
        check_stream_lengths(assigner.stream_tokens(), seq_len, num_streams)
    else:
        check_stream_lengths(assigner.stream_tokens(), seq_len, num_streams,
                             option="data.eval_num_streams", what="the eval split")


def _stream_parts(pending, part, num_streams):
    if not pending:
        return
    parked = ParkedBlocks.concatenate([p for p, _ in pending])
    streams = np.concatenate([s for _, s in pending])
    by_stream = np.argsort(streams, kind="stable")  # keeps corpus order inside a stream
    bounds = np.searchsorted(streams[by_stream], np.arange(num_streams + 1))
    for stream in range(num_streams):
        if bounds[stream] < bounds[stream + 1]:
            yield stream, (part, parked.select(by_stream[bounds[stream]:bounds[stream + 1]]))


class AssignStreams(beam.PTransform):
    """((split, range index), counts) per range -> (stream, [(part, ParkedBlocks)]) of one
    split (§2).

    One step visits every block of the split, but reads them a range at a time from the parked
    indexes and hands the locations on in parts, so its memory does not grow with the corpus.
    """

    def __init__(self, output_dir, split, num_streams, seq_len, unk_check=None):
        super().__init__()
        self.output_dir = output_dir
        self.split = split
        self.num_streams = num_streams
        self.seq_len = seq_len
        self.unk_check = unk_check

    def expand(self, range_results):
        return (range_results
                | "CollectRanges" >> beam.combiners.ToList()
                | "Assign" >> beam.FlatMap(_assign, self.output_dir, self.split,
                                           self.num_streams, self.seq_len, self.unk_check)
                | "GroupStreams" >> beam.GroupByKey())


class _WriteStreamFn(beam.DoFn):
    def __init__(self, data_config, tokenizer_path, tokenizer_sha256, output_dir, split):
        self.data_config = data_config
        self.tokenizer_path = tokenizer_path
        self.tokenizer_sha256 = tokenizer_sha256
        self.output_dir = output_dir
        self.split = split
        prefix = "" if split == TRAIN else "eval_"
        self.segments = _counter(f"{prefix}segments")
        self.streams = _counter(f"{prefix}stream_files")

    def setup(self):
        tokenizer = load_checked_tokenizer(self.tokenizer_path, self.tokenizer_sha256,
                                           self.data_config.uncased)
        self.writer = StreamWriter(self.data_config, tokenizer.start_piece_table,
                                   self.output_dir)

    def process(self, stream_parts):
        stream, parts = stream_parts
        config = self.data_config
        parked = ParkedBlocks.concatenate([p for _, p in sorted(parts, key=lambda p: p[0])])
        ids, sent_ids = sentence_stream(*read_store(self.output_dir, self.split, parked))
        directions = [(stream, False, ids, sent_ids)]
        num_streams = config.num_streams if self.split == TRAIN else config.eval_streams
        if config.bi_data:
            directions.append((num_streams + stream, True, ids[::-1].copy(),
                               sent_ids[::-1].copy()))
        for pass_index in range(config.num_passes if self.split == TRAIN else 1):
            for stream_id, reverse, stream_ids, stream_sent_ids in directions:
                entry, stats = self.writer.write(stream_ids, stream_sent_ids, stream_id,
                                                 reverse, pass_index, self.split)
                self.segments.inc(entry["examples"])
                self.streams.inc()
                yield self.split, pass_index, entry, stats


class WriteStreams(beam.PTransform):
    """(stream, [(part, ParkedBlocks)]) of one split -> its stream files of every pass.

    Yields (split, pass, dataset_info entry, stats) per file."""

    def __init__(self, data_config, tokenizer_path, tokenizer_sha256, output_dir, split):
        super().__init__()
        self.fn = _WriteStreamFn(data_config, tokenizer_path, tokenizer_sha256, output_dir,
                                 split)

    def expand(self, streams):
        return streams | "Write" >> beam.ParDo(self.fn)


class FinalizeDataset(beam.PTransform):
    """After every stream file: stats.json, dataset_info.json, then COMPLETED."""

    def __init__(self, finalize):
        super().__init__()
        self.finalize = finalize  # callable(file_results, {split: document counts})

    def expand(self, inputs):
        file_results, document_stats = inputs
        return (file_results
                | "CollectFiles" >> beam.combiners.ToList()
                | "WriteInfo" >> beam.Map(self.finalize, beam.pvalue.AsDict(document_stats)))
