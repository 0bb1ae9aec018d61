"""RelativeAttention: XLNet's two-stream relative multi-head attention (original-xlnet.md
§6.5-§6.8).

The content stream (all L positions) and the query stream (only the K target rows) share every
weight and the keys, values and position keys computed from `[memory ; content]`. The layer
returns the `o`-projected, dropped-out attention output of each stream, before the residual and
LayerNorm. Heads-major layouts ([B, n, T, ...]) let every score product be a plain batched
matmul.
"""

import keras
import tensorflow as tf

from xlnet.model.dropout import stateless_dropout

MASKED_SCORE = 1e30  # the original subtracts 1e30, not -inf: a row that sees nothing is uniform


def attention_bias(blocked):
    """bool mask (True = blocked) -> float32 additive bias: -1e30 where blocked, else 0."""
    return None if blocked is None else -MASKED_SCORE * tf.cast(blocked, tf.float32)


@tf.custom_gradient
def rel_shift(position_scores):
    """[B, n, T, T+k] scores against all encoding rows -> [B, n, T, k] where entry (i, j) is
    raw column `j + T - i`, i.e. distance `(k - T) + i - j` (original-xlnet.md §6.5).

    The gradient is written as the inverse shift (two pads): TF's gradient of the slices
    (StridedSliceGrad) is about 20x slower on CPU."""
    batch = tf.shape(position_scores)[0]
    heads, q_len, r_len = position_scores.shape[1:]
    k_len = r_len - q_len
    flat = tf.reshape(position_scores, [batch, heads, q_len * r_len])[:, :, q_len:]
    shifted = tf.reshape(flat, [batch, heads, q_len, r_len - 1])[:, :, :, :k_len]

    def gradient(upstream):  # [B, n, T, k] -> [B, n, T, T+k]
        rows = tf.pad(upstream, [[0, 0], [0, 0], [0, 0], [0, r_len - 1 - k_len]])
        flat_rows = tf.reshape(rows, [batch, heads, q_len * (r_len - 1)])
        return tf.reshape(tf.pad(flat_rows, [[0, 0], [0, 0], [q_len, 0]]),
                          [batch, heads, q_len, r_len])

    return shifted, gradient  # [B, n, T, k]


def target_rel_shift(position_scores, target_positions, q_len):
    """[B, n, K, q_len+k] query-stream scores -> [B, n, K, k]: a target at position p reads
    the k encoding rows from raw column `q_len - p` on, as content row p does after
    rel_shift."""
    batch_heads_targets = tf.shape(position_scores)[:3]
    k_len = position_scores.shape[3] - q_len
    first_column = (q_len - target_positions)[:, None, :, None]  # [B, 1, K, 1]
    columns = tf.broadcast_to(first_column + tf.range(k_len),
                              tf.concat([batch_heads_targets, [k_len]], 0))  # [B, n, K, k]
    return tf.gather(position_scores, columns, batch_dims=3)  # [B, n, K, k]


class RelativeAttention(keras.layers.Layer):
    """One layer's `rel_attn`: q, k, v, r, o kernels of shape [d_model, n_head, d_head]."""

    def __init__(self, d_model, n_head, d_head, dropout, dropatt, dropout_site, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.n_head, self.d_head = d_model, n_head, d_head
        self.dropout, self.dropatt = dropout, dropatt
        self.dropout_site = dropout_site
        self.scale = 1.0 / d_head ** 0.5
        initializer = keras.initializers.RandomNormal(stddev=0.02)
        shape = (d_model, n_head, d_head)
        self.q_kernel = self.add_weight(shape=shape, initializer=initializer, name="q_kernel")
        self.k_kernel = self.add_weight(shape=shape, initializer=initializer, name="k_kernel")
        self.v_kernel = self.add_weight(shape=shape, initializer=initializer, name="v_kernel")
        self.r_kernel = self.add_weight(shape=shape, initializer=initializer, name="r_kernel")
        self.o_kernel = self.add_weight(shape=shape, initializer=initializer, name="o_kernel")
        self.built = True

    def original_variables(self, prefix):
        return {f"{prefix}/{name}/kernel": getattr(self, f"{name}_kernel")
                for name in ("q", "k", "v", "r", "o")}

    def call(self, content, query=None, *, memory=None, positional_encoding,
             content_bias, position_bias, segment_bias, segment_embedding,
             segment_different=None, query_segment_different=None,
             content_mask=None, query_mask=None,
             target_positions=None, target_weights=None, training=False, seed=None,
             memory_share=False):
        """Attention of both streams over the keys `[memory ; content]`.

        content [B, L, d]; query [B, K, d] or None; memory [B, M, d] or None;
        positional_encoding [X, L+M+L, d] (X directions, each for B/X consecutive rows);
        content_bias, position_bias, segment_bias [n, dh] (u, v, s); segment_embedding
        [2, n, dh]; segment_different bool [B, L, M+L] and query_segment_different bool
        [B, K, M+L] (None: no segment term); content_mask bool [B, L, M+L] and query_mask bool
        [B, K, M+L], True = blocked (None: nothing blocked);
        target_positions int32 [B, K]; target_weights [B, K] (0 for padding target rows,
        whose attention output is zeroed).
        Returns (content_out [B, L, d], query_out [B, K, d] or None), and with `memory_share`
        a third value: the content stream's mean attention probability on the memory slots
        (float32 scalar; how much this layer reads the recurrence).
        """
        dtype = self.compute_dtype
        content = tf.cast(content, dtype)
        keys_in = content if memory is None else tf.concat([tf.cast(memory, dtype), content], 1)
        q_len = content.shape[1]
        # The 1/sqrt(dh) scale is applied to the queries and their biases (the same product,
        # on a tensor k times smaller than the scores).
        biases = [tf.cast(b, dtype) * self.scale for b in
                  (content_bias, position_bias, segment_bias)]
        biases = [b[:, None, :] for b in biases]  # [n, 1, dh]
        segment_embedding = tf.cast(segment_embedding, dtype)

        key = self._heads(keys_in, self.k_kernel)  # [B, n, M+L, dh]
        value = self._heads(keys_in, self.v_kernel)  # [B, n, M+L, dh]
        position_key = tf.einsum("xrd,dnh->xnrh", tf.cast(positional_encoding, dtype),
                                 tf.cast(self.r_kernel, dtype))  # [X, n, R, dh]
        shared = (key, value, position_key, biases, segment_embedding)

        scaled_query = self._heads(content, self.q_kernel) * self.scale  # [B, n, L, dh]
        scores = self._scores(scaled_query, shared, segment_different)
        position_scores = rel_shift(self._position_scores(scaled_query, shared))
        content_out, probs = self._attend(scores + position_scores, content_mask, value,
                                          training, seed, site=0)
        query_out = None
        if query is not None:
            scaled_query = self._heads(query, self.q_kernel) * self.scale  # [B, n, K, dh]
            scores = self._scores(scaled_query, shared, query_segment_different)
            position_scores = target_rel_shift(
                self._position_scores(scaled_query, shared), target_positions, q_len)
            # The original scatters queries to L rows and gathers back with target_mapping:
            # a padding (all-zero) target row gets a zero attention output.
            query_out, _ = self._attend(scores + position_scores, query_mask, value,
                                        training, seed, site=1,
                                        row_weights=target_weights)
        if memory_share:
            m_len = keys_in.shape[1] - q_len
            share = tf.reduce_mean(tf.reduce_sum(tf.cast(probs[..., :m_len], tf.float32), -1))
            return content_out, query_out, share
        return content_out, query_out

    def _heads(self, inputs, kernel):
        """[B, T, d] -> [B, n, T, dh]."""
        return tf.einsum("btd,dnh->bnth", tf.cast(inputs, self.compute_dtype),
                         tf.cast(kernel, self.compute_dtype))

    def _scores(self, query, shared, segment_different):
        """Content and segment terms: [B, n, T, M+L]."""
        key, _, _, (u, _, s), segment_embedding = shared
        scores = tf.matmul(query + u, key, transpose_b=True)  # [B, n, T, M+L]
        if segment_different is None:
            return scores
        same, different = tf.unstack(
            tf.einsum("bnth,snh->sbnt", query + s, segment_embedding), axis=0)  # 2x[B,n,T]
        return scores + tf.where(segment_different[:, None], different[..., None],
                                 same[..., None])

    @staticmethod
    def _position_scores(query, shared):
        """Queries against all R position keys of their direction: [B, n, T, R]. The position
        keys are computed once per direction, not per example."""
        _, _, position_key, (_, v, _), _ = shared
        directions = position_key.shape[0]
        grouped = tf.reshape(query + v, [directions, -1] + query.shape[1:].as_list())
        scores = tf.matmul(grouped, position_key[:, None], transpose_b=True)  # [X,B/X,n,T,R]
        return tf.reshape(scores, [-1] + scores.shape[2:].as_list())  # [B, n, T, R]

    def _attend(self, scores, mask, value, training, seed, site, row_weights=None):
        """Masked softmax over the keys (float32), dropatt, weighted values, `o`, dropout.
        Returns (output [B, T, d], the probabilities before dropatt [B, n, T, M+L])."""
        scores = tf.cast(scores, tf.float32)
        if mask is not None:
            scores += attention_bias(mask)[:, None]
        probs = tf.cast(tf.nn.softmax(scores, axis=-1), self.compute_dtype)  # [B, n, T, M+L]
        dropped = stateless_dropout(probs, self.dropatt, seed, self.dropout_site + site,
                                    training)
        attended = tf.matmul(dropped, value)  # [B, n, T, dh]
        if row_weights is not None:
            attended *= tf.cast(row_weights, attended.dtype)[:, None, :, None]
        output = tf.einsum("bnth,dnh->btd", attended,
                           tf.cast(self.o_kernel, self.compute_dtype))  # [B, T, d]
        return stateless_dropout(output, self.dropout, seed, self.dropout_site + 2 + site,
                                 training), probs
