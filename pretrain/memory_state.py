"""Per-replica recurrent memory, carried from step to step and kept beside checkpoints.

Each replica holds the memory of its own rows ([b, N, M, D]) as a per-replica value that the
step returns and the next step takes. A save writes each worker's rows, and only those, into
shards keyed by the rows' canonical identity (`StreamPlan.canonical_row`, independent of the
replica count), and a resume reads back only the rows this worker's replicas will own, from
whichever shards hold them (pretrain/memory_shards.py): memory I/O per worker is proportional
to its rows, and a run may resume on another number of replicas or workers. No collective
moves memory; the one collective of a save is the gather of each row's crc32c, which tells the
chief that every worker's shards are whole before it writes the manifest and the checkpoint.
"""

import logging

import numpy as np
import tensorflow as tf

from pretrain import memory_shards
from xlnet.errors import UserError
from xlnet.formats.model_dir import LEGACY_MEMORY_KEY, checkpoint_step

logger = logging.getLogger(__name__)


class MemoryState:

    def __init__(self, strategy, canonical_rows, n_layer, mem_len, d_model):
        """`canonical_rows[r]`: the canonical row of global row r (a permutation of 0..G-1)."""
        self.strategy = strategy
        self.global_batch_size = len(canonical_rows)
        self.local_batch_size = self.global_batch_size // strategy.num_replicas_in_sync
        self.canonical_rows = list(canonical_rows)
        self.row_shape = [n_layer, mem_len, d_model]
        self.enabled = mem_len > 0
        # This worker's replicas (global replica ids, as the strategy hands out values) and
        # the canonical rows they own, replica by replica.
        ids = strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(context.replica_id_in_sync_group))
        self.local_replicas = [int(v) for v in strategy.experimental_local_results(ids)]
        b = self.local_batch_size
        self.local_rows = [self.canonical_rows[p * b + i]
                           for p in self.local_replicas for i in range(b)]
        self.worker = self.local_replicas[0] // len(self.local_replicas)
        self.current = None

    def distribute(self, rows=None):
        """Hands each local replica its rows of `rows` ([k·b, N, M, D] in `local_rows` order;
        None: zeros); returns the per-replica memory."""
        if not self.enabled:
            self.current = None
            return None
        b = self.local_batch_size
        position = {replica: i for i, replica in enumerate(self.local_replicas)}

        def replica_rows(context):
            if rows is None:
                return tf.zeros([b, *self.row_shape])
            first = position[context.replica_id_in_sync_group] * b
            return tf.identity(tf.constant(rows[first:first + b], tf.float32))  # [b, N, M, D]

        self.current = self.strategy.experimental_distribute_values_from_function(replica_rows)
        return self.current

    def update(self, new_memory):
        self.current = new_memory

    def local_values(self):
        """This worker's rows [k·b, N, M, D] (in `local_rows` order) as one host array."""
        return np.concatenate([np.asarray(v, np.float32) for v in
                               self.strategy.experimental_local_results(self.current)])

    def _gather_rows(self, values):
        """Per local row values [k·b, ...] -> every worker's [G, ...] in global row order (a
        collective: it returns once every worker has handed in its values)."""
        if self.strategy.num_replicas_in_sync == 1:
            return values
        b = self.local_batch_size
        position = {replica: i for i, replica in enumerate(self.local_replicas)}
        per_replica = self.strategy.experimental_distribute_values_from_function(
            lambda context: tf.identity(tf.constant(
                values[position[context.replica_id_in_sync_group] * b:][:b])))
        return self.strategy.gather(per_replica, axis=0).numpy()

    def save(self, directory, step, chief):
        """Every worker: writes its rows' shards for ckpt-`step`; then the chief, once all
        workers' shards are whole, writes the manifest. Call before the checkpoint's save.
        Returns the bytes of memory this worker wrote."""
        if not self.enabled or self.current is None:
            return 0
        values = self.local_values()
        written = memory_shards.write_shards(directory, step, self.local_rows, values)
        crcs = np.array([memory_shards.row_crc(row) for row in values], np.uint32)
        mine = np.stack([crcs.view(np.int32), np.full_like(crcs.view(np.int32), self.worker)],
                        axis=1)  # [k·b, 2]
        everyone = self._gather_rows(mine)  # [G, 2] in global row order
        if chief:
            row_crcs = [0] * self.global_batch_size
            row_workers = [0] * self.global_batch_size
            for r, (crc, worker) in enumerate(everyone):
                row_crcs[self.canonical_rows[r]] = int(np.int32(crc).view(np.uint32))
                row_workers[self.canonical_rows[r]] = int(worker)
            memory_shards.write_manifest(directory, step, memory_shards.build_manifest(
                directory, step, self.row_shape, row_crcs, row_workers))
        logger.info("worker %d wrote the memory of %d rows (%d bytes) for ckpt-%d", self.worker,
                    len(self.local_rows), written, step)
        return written

    def restore(self, directory, prefix):
        """Reads this worker's rows of checkpoint `prefix` and hands them to its replicas.
        Returns the bytes of memory read."""
        if not self.enabled:
            self.distribute(None)
            return 0
        step = checkpoint_step(prefix)
        manifest = memory_shards.read_manifest(directory, step, prefix)
        if manifest is None:
            rows, read = self._legacy_rows(directory, step, prefix), None
        else:
            memory_shards.check_shards(directory, manifest, prefix, self.global_batch_size,
                                       self.row_shape)
            rows, read, files = memory_shards.read_rows(directory, manifest, self.local_rows,
                                                        prefix)
            logger.info("worker %d read the memory of %d rows (%d bytes) from %d of %d shards "
                        "of %s", self.worker, len(self.local_rows), read, files,
                        len(manifest["shards"]), prefix)
        self.distribute(rows)
        return read

    def _legacy_rows(self, directory, step, prefix):
        """This worker's rows from a checkpoint that holds the whole batch's memory inside
        (written before the shards); without that, the missing manifest is an error."""
        reader = tf.train.load_checkpoint(prefix)
        if not reader.has_tensor(LEGACY_MEMORY_KEY):
            name = prefix.rsplit("/", 1)[-1]
            raise UserError(f"{directory.memory_manifest_path(step)}: missing (the memory "
                            f"manifest of {name}); restore it, or move {name}.* away to "
                            "resume from the checkpoint before it")
        whole = reader.get_tensor(LEGACY_MEMORY_KEY)  # [G, N, M, D], canonical row order
        if list(whole.shape) != [self.global_batch_size, *self.row_shape]:
            raise UserError(f"{prefix}: holds memory of shape {list(whole.shape)}, this run "
                            f"needs {[self.global_batch_size, *self.row_shape]}; use a new "
                            "--model-dir")
        logger.info("worker %d read its rows of the whole batch's memory inside %s (a "
                    "checkpoint from before memory shards)", self.worker, prefix)
        return whole[self.local_rows]
