"""Per-replica recurrent memory, carried from step to step and kept in checkpoints.

Each replica holds the memory of its own rows ([b, N, M, D]) as a per-replica value that the
step returns and the next step takes. Checkpoints cannot hold per-replica values, so before a
save the rows are gathered into one host variable [global_batch, N, M, D], and after a restore
each replica takes its rows back out of it. The host variable is in canonical row order (the
rows' identity independent of the replica count, `StreamPlan.canonical_row`), so a run may
resume on another number of replicas and each row still finds the memory of its stream.
"""

import tensorflow as tf


class MemoryState:

    def __init__(self, strategy, canonical_rows, n_layer, mem_len, d_model):
        """`canonical_rows[r]`: the canonical row of global row r (a permutation of 0..G-1)."""
        self.strategy = strategy
        global_batch_size = len(canonical_rows)
        self.local_batch_size = global_batch_size // strategy.num_replicas_in_sync
        self.canonical_rows = tf.constant(canonical_rows, tf.int32)  # [G]
        self.global_rows = tf.constant(
            sorted(range(global_batch_size), key=lambda r: canonical_rows[r]), tf.int32)  # [G]
        self.shape = [global_batch_size, n_layer, mem_len, d_model]
        self.enabled = mem_len > 0
        with tf.device("/cpu:0"):
            # A plain host variable: every worker keeps (and saves) the whole batch's rows.
            self.host = tf.Variable(tf.zeros(self.shape if self.enabled else [0]),
                                    trainable=False, name="memory")
        self.current = None

    def distribute(self):
        """Hands each replica its rows of the host variable; returns the per-replica memory."""
        if not self.enabled:
            self.current = None
            return None
        rows = self.local_batch_size

        def replica_rows(context):
            first = context.replica_id_in_sync_group * rows
            canonical = self.canonical_rows[first:first + rows]  # [b]
            return tf.gather(self.host, canonical)  # [b, N, M, D]

        self.current = self.strategy.experimental_distribute_values_from_function(replica_rows)
        return self.current

    def update(self, new_memory):
        self.current = new_memory

    def gather(self):
        """All replicas' rows as one [G, N, M, D] tensor in global row order (a collective
        under multi-worker)."""
        if self.strategy.num_replicas_in_sync == 1:
            return tf.convert_to_tensor(self.strategy.experimental_local_results(
                self.current)[0])
        return self.strategy.gather(self.current, axis=0)

    def store(self):
        """Copies the per-replica memory into the host variable (call before saving)."""
        if self.enabled and self.current is not None:
            self.host.assign(tf.gather(self.gather(), self.global_rows))
