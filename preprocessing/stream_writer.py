"""Writes one stream of one pass: segments (§3), span masks (§4), permutation ranks (§5.1).

Every (seed, pass, stream) gets its own numpy SeedSequence (spawn_key = (pass, stream), and
(pass, stream, 1) for the eval split's streams), and from it one generator each for the A/B
split, the masks and the ranks, so passes, streams and splits never share random numbers and
the output does not depend on which worker writes a stream.
"""

import collections

import numpy as np

from preprocessing.perm_rank_sampler import PermRankSampler
from preprocessing.record_writer import RecordWriter, encode_examples
from preprocessing.segmenter import Segmenter
from preprocessing.span_mask_sampler import SpanMaskSampler
from xlnet.schema import TRAIN, crc32c_hex, stream_file

_CHUNK_SEGMENTS = 128  # segments encoded together (bounded memory, numpy-sized batches)
RNG_DESCRIPTION = "numpy PCG64(SeedSequence(seed, spawn_key=(pass, stream))).spawn(3): " \
                  "A/B split, masks, ranks; spawn_key=(pass, stream, 1) in the eval split"


def stream_generators(seed, pass_index, stream, split=TRAIN):
    """(A/B split, mask, rank) generators of one pass of one stream of a split."""
    spawn_key = (pass_index, stream) if split == TRAIN else (pass_index, stream, 1)
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=spawn_key)
    return tuple(np.random.Generator(np.random.PCG64(child)) for child in sequence.spawn(3))


class StreamWriter:
    def __init__(self, data_config, start_piece_table, output_dir):
        self.config = data_config
        self.output_dir = output_dir
        self.segmenter = Segmenter(data_config.seq_len, data_config.reuse_len)
        self.mask_sampler = SpanMaskSampler(start_piece_table, data_config.mask_alpha,
                                            data_config.mask_beta, data_config.max_gram,
                                            data_config.span_unit)
        self.rank_sampler = PermRankSampler(data_config.seq_len, data_config.reuse_len,
                                            data_config.perm_size)

    def write(self, ids, sent_ids, stream, reverse, pass_index, split=TRAIN):
        """Writes the stream file (`schema.stream_file`); returns its entry and statistics."""
        from apache_beam.io.filesystems import FileSystems

        relative_path = stream_file(pass_index, stream, split)
        split_rng, mask_rng, rank_rng = stream_generators(self.config.seed, pass_index, stream,
                                                          split)
        stats = {"examples": 0, "label_true_b": 0, "masked": 0,
                 "span_lengths": collections.Counter(), "covered_tokens": 0}
        with RecordWriter(FileSystems.join(self.output_dir, relative_path)) as writer:
            for batch in self.segmenter.batches(ids, sent_ids, split_rng, _CHUNK_SEGMENTS):
                writer.write(self._encode(batch, stream, reverse, mask_rng, rank_rng, stats))
                stats["covered_tokens"] = int(batch.a_end[-1])
        entry = {"stream": stream, "reverse": int(reverse), "file": relative_path,
                 "examples": stats["examples"], "size": writer.size,
                 "crc32c": crc32c_hex(writer.crc32c)}
        stats["stream_tokens"] = int(ids.size)
        return entry, stats

    def _encode(self, batch, stream, reverse, mask_rng, rank_rng, stats):
        input_ids = batch.input_ids  # [n, L]
        is_masked, (_, span_begins, span_ends) = self.mask_sampler.sample_halves(
            input_ids, self.config.reuse_len, self.config.predict_goals, reverse, mask_rng)
        count = len(input_ids)
        labels = batch.label.astype(np.int64)
        stats["examples"] += count
        stats["label_true_b"] += int(labels.sum())
        stats["masked"] += int(is_masked.sum())
        lengths, counts = np.unique(span_ends - span_begins, return_counts=True)
        stats["span_lengths"].update(dict(zip(lengths.tolist(), counts.tolist())))
        return encode_examples({
            "input_ids": input_ids,
            "segment_ids": batch.segment_ids,
            "is_masked": is_masked.view(np.int8),
            "perm_rank": self.rank_sampler.sample(rank_rng, count),
            "label": labels[:, None],
            "stream": np.full((count, 1), stream),
            "index": batch.index[:, None],
            "reverse": np.full((count, 1), int(reverse)),
        })
