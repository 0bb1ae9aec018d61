"""The training input pipeline: rows that walk whole streams, in lockstep, replica by replica.

Row layout (docs/architecture.md "Rows, streams, replicas, memory"): replica `p` owns global rows
`[p·b, (p+1)·b)`; with bi_data its first `b/2` rows read forward streams and its last `b/2`
rows read the reversed copies of the same streams (the model relies on that split). Each
forward row reads a fixed share of the forward streams, one whole stream after another, in an
order drawn per epoch from the seed; epoch `e` reads pass `e mod num_passes`. All rows advance
one segment per micro-step, so the data position is a single counter (micro-steps consumed):
a resumed run rebuilds the pipeline at that position and reads exactly the same segments.
"""

import os

import numpy as np
import tensorflow as tf

from xlnet import schema
from xlnet.errors import UserError
from xlnet.model.permutation import permutation_inputs, sample_perm_ranks


# The batch features the model reads; the others (targets, weights, stream, index) are the
# trainer's and the evaluator's.
MODEL_INPUTS = ("input_ids", "segment_ids", "perm_mask", "target_mapping")


def load_dataset_info(data_dir, run_config):
    """Reads dataset_info.json, refusing an unfinished dataset or one for another config."""
    info = schema.DatasetInfo.read(data_dir)
    info.check_matches(run_config, where=os.path.join(data_dir, schema.INFO_FILE))
    return info


class StreamPlan:
    """Which stream files each global row reads, epoch by epoch, and where a position falls."""

    def __init__(self, info, data_dir, global_batch_size, num_replicas, seed, split=schema.TRAIN):
        self.data_dir = data_dir
        self.split = split
        self.bi_data = bool(info.data["bi_data"])
        self.global_batch_size = global_batch_size
        self.num_replicas = num_replicas
        self.seed = seed
        self._passes = [self._index_pass(p, entries["streams"])
                        for p, entries in enumerate(info.split_passes(split))]
        self.num_streams = len(self._passes[0][0])
        self.rows_per_direction = global_batch_size // 2 if self.bi_data else global_batch_size
        self._check_layout()
        self.streams_per_row = self.num_streams // self.rows_per_direction
        self._epoch_lengths = {}

    @staticmethod
    def _index_pass(pass_index, streams):
        forward = sorted((s for s in streams if not s["reverse"]), key=lambda s: s["stream"])
        reverse = {s["stream"] - len(forward): s for s in streams if s["reverse"]}
        if [s["stream"] for s in forward] != list(range(len(forward))):
            raise UserError(f"dataset_info.json: pass {pass_index} does not list forward "
                            "streams 0..n-1; prepare the data again")
        return forward, reverse

    def _check_layout(self):
        total_streams = self.num_streams * (2 if self.bi_data else 1)
        if self.global_batch_size % self.num_replicas:
            raise UserError(
                f"train.global_batch_size: {self.global_batch_size} rows do not split evenly "
                f"over {self.num_replicas} replicas")
        local = self.global_batch_size // self.num_replicas
        if self.bi_data and local % 2:
            raise UserError(
                f"train.global_batch_size: each of the {self.num_replicas} replicas would get "
                f"{local} rows, but bi_data needs an even number (half forward, half reversed)")
        if self.num_streams % self.rows_per_direction:
            divisors = [g for g in range(1, total_streams + 1)
                        if total_streams % g == 0 and (g % 2 == 0 or not self.bi_data)]
            where = "dataset's" if self.split == schema.TRAIN else "eval split's"
            raise UserError(
                f"train.global_batch_size: {self.global_batch_size} does not divide the "
                f"{where} {total_streams} streams; use one of {divisors}")
        for p, (forward, reverse) in enumerate(self._passes):
            if len(forward) != self.num_streams or (
                    self.bi_data and sorted(reverse) != list(range(self.num_streams))):
                raise UserError(f"dataset_info.json: pass {p} holds a different set of streams "
                                "than pass 0; prepare the data again")

    @property
    def local_batch_size(self):
        return self.global_batch_size // self.num_replicas

    def row_direction(self, row):
        """(forward row index, reversed?) of global row `row`."""
        if not self.bi_data:
            return row, False
        replica, within = divmod(row, self.local_batch_size)
        half = self.local_batch_size // 2
        return replica * half + within % half, within >= half

    def canonical_row(self, row):
        """A row's identity independent of the replica count: forward rows, then reversed."""
        forward_row, reversed_row = self.row_direction(row)
        return forward_row + (self.rows_per_direction if reversed_row else 0)

    def stream_order(self, epoch):
        """Forward stream ids in the order the rows read them in this epoch."""
        rng = np.random.default_rng([self.seed, epoch])
        return rng.permutation(self.num_streams)

    def row_streams(self, row, epoch):
        """The stream entries (dataset_info.json) that `row` reads in `epoch`, in order."""
        forward, reverse = self._passes[epoch % len(self._passes)]
        forward_row, reversed_row = self.row_direction(row)
        share = self.stream_order(epoch)[forward_row * self.streams_per_row:
                                         (forward_row + 1) * self.streams_per_row]
        return [reverse[s] if reversed_row else forward[s] for s in share]

    def epoch_length(self, epoch):
        """Micro-steps in `epoch`: the rows move in lockstep, so the shortest row decides."""
        if epoch not in self._epoch_lengths:
            self._epoch_lengths[epoch] = min(
                sum(s["examples"] for s in self.row_streams(row, epoch))
                for row in range(self.global_batch_size))
        return self._epoch_lengths[epoch]

    def locate(self, position):
        """(epoch, micro-step within it) of a global data position."""
        epoch = 0
        while position >= self.epoch_length(epoch):
            if self.epoch_length(epoch) == 0:
                raise UserError("dataset: a pass holds no examples; prepare the data again")
            position -= self.epoch_length(epoch)
            epoch += 1
        return epoch, position

    def file_plan(self, row, position, micro_steps):
        """(paths, skips, takes): the record ranges `row` reads for `micro_steps` steps."""
        epoch, offset = self.locate(position)
        paths, skips, takes = [], [], []
        remaining = micro_steps
        while remaining > 0:
            budget = min(self.epoch_length(epoch) - offset, remaining)
            remaining -= budget
            for stream in self.row_streams(row, epoch):
                if budget == 0:
                    break
                skip = min(offset, stream["examples"])
                offset -= skip
                take = min(stream["examples"] - skip, budget)
                if take > 0:
                    paths.append(os.path.join(self.data_dir, stream["file"]))
                    skips.append(skip)
                    takes.append(take)
                    budget -= take
            epoch, offset = epoch + 1, 0
        return paths, skips, takes


class InputPipeline:
    """Builds the per-replica datasets of one worker from a StreamPlan."""

    def __init__(self, plan, data, seed, grad_accum_steps=1, resample_perm=False):
        self.plan = plan
        self.data = data  # xlnet.config.data_config.DataConfig (seq_len, reuse_len, ...)
        self.seed = seed
        self.grad_accum_steps = grad_accum_steps
        self.resample_perm = resample_perm
        self._features = {
            **{name: tf.io.FixedLenFeature([data.seq_len], tf.int64)
               for name in schema.SEQUENCE_FEATURES},
            **{name: tf.io.FixedLenFeature([], tf.int64) for name in schema.SCALAR_FEATURES},
        }

    def rows_of_worker(self, worker, replicas_per_worker):
        first = worker * replicas_per_worker * self.plan.local_batch_size
        return list(range(first, first + replicas_per_worker * self.plan.local_batch_size))

    def _row_records(self, row, position, micro_steps):
        paths, skips, takes = self.plan.file_plan(row, position, micro_steps)
        ranges = tf.data.Dataset.from_tensor_slices(
            (paths, tf.constant(skips, tf.int64), tf.constant(takes, tf.int64)))
        return ranges.flat_map(
            lambda path, skip, take: tf.data.TFRecordDataset(path, buffer_size=1 << 20)
            .skip(skip).take(take))

    def worker_dataset(self, worker, replicas_per_worker, position, steps):
        """Elements, replica by replica (round-robin): dicts of [A, b, ...] tensors.

        `position`: micro-steps already consumed; `steps`: optimizer steps to deliver.
        """
        rows = self.rows_of_worker(worker, replicas_per_worker)
        micro_steps = steps * self.grad_accum_steps
        records = tf.data.Dataset.zip(
            tuple(self._row_records(r, position, micro_steps) for r in rows))
        records = records.map(lambda *serialized: tf.stack(serialized))  # [n]
        dataset = tf.data.Dataset.zip(
            tf.data.Dataset.range(position, position + micro_steps), records)
        row_ids = tf.constant([self.plan.canonical_row(r) for r in rows], tf.int32)
        dataset = dataset.map(lambda pos, serialized: self._parse(pos, serialized, row_ids),
                              num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.batch(self.grad_accum_steps, drop_remainder=True)  # [A, n, ...]
        b = self.plan.local_batch_size
        dataset = dataset.map(lambda features: {
            name: _replica_major(value, replicas_per_worker, b)
            for name, value in features.items()})  # [k, A, b, ...]
        return dataset.unbatch().prefetch(tf.data.AUTOTUNE)

    def _parse(self, position, serialized, row_ids):
        parsed = tf.io.parse_example(serialized, self._features)
        parsed = {name: tf.cast(value, tf.int32) for name, value in parsed.items()}
        perm_rank = parsed["perm_rank"]  # [n, L]
        if self.resample_perm:
            # Drawn for the whole global batch and then sliced by canonical row, so a row's
            # order does not depend on how rows are spread over replicas and workers.
            step_seed = tf.random.experimental.stateless_fold_in(
                tf.constant([self.seed, 0x5eed], tf.int64), position)
            all_ranks = sample_perm_ranks(step_seed, self.plan.global_batch_size,
                                          self.data.seq_len, self.data.reuse_len,
                                          self.data.perm_size)  # [G, L]
            perm_rank = tf.gather(all_ranks, row_ids)  # [n, L]
        derived = permutation_inputs(parsed["input_ids"], parsed["is_masked"], perm_rank,
                                     self.data.reuse_len, self.data.num_predict)
        return {
            "input_ids": parsed["input_ids"],  # [n, L]
            "segment_ids": parsed["segment_ids"],  # [n, L]
            **derived,
            "stream": parsed["stream"],  # [n]
            "index": parsed["index"],  # [n]
        }


def _replica_major(value, replicas, local_batch):
    """[A, k·b, ...] -> [k, A, b, ...]."""
    shape = tf.shape(value)
    split = tf.reshape(value, tf.concat([[shape[0], replicas, local_batch], shape[2:]], 0))
    rank = len(value.shape)
    return tf.transpose(split, [1, 0] + list(range(2, rank + 1)))
