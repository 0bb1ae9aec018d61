"""RelativeAttention: XLNet's two-stream relative multi-head attention (spec §6.5-§6.8).

The content stream (all L positions) and the query stream (only the K target rows) share every
weight and the keys, values and position keys computed from `[memory ; content]`. The layer
returns the `o`-projected, dropped-out attention output of each stream, before the residual and
LayerNorm.
"""

import keras
import tensorflow as tf

from xlnet.dropout import stateless_dropout

MASKED_SCORE = 1e30  # the original subtracts 1e30, not -inf: a row that sees nothing is uniform


def rel_shift(position_scores, k_len):
    """[B, n, T, R] scores against all R encoding rows -> [B, n, T, k_len] where entry (i, j)
    is raw column `j + T - i`, i.e. distance `(k_len - T) + i - j` (spec §6.5)."""
    batch, heads, q_len, r_len = (tf.shape(position_scores)[0], position_scores.shape[1],
                                  position_scores.shape[2], position_scores.shape[3])
    shifted = tf.reshape(position_scores, [batch, heads, r_len, q_len])[:, :, 1:, :]
    shifted = tf.reshape(shifted, [batch, heads, q_len, r_len - 1])
    return shifted[:, :, :, :k_len]  # [B, n, T, k_len]


def target_rel_shift(position_scores, target_positions, q_len, k_len):
    """[B, K, n, R] query-stream scores -> [B, K, n, k_len]: a target at position p reads the
    k_len encoding rows from raw column `q_len - p` on, as content row p would after rel_shift.
    """
    columns = (q_len - target_positions)[:, :, None] + tf.range(k_len)[None, None, :]  # [B,K,k]
    return tf.gather(position_scores, columns, axis=3, batch_dims=2)  # [B, K, n, k_len]


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
             target_positions=None, target_weights=None, training=False, seed=None):
        """Attention of both streams over the keys `[memory ; content]`.

        content [B, L, d]; query [B, K, d] or None; memory [B, M, d] or None;
        positional_encoding [X, L+M+L, d] (X directions, each for B/X consecutive rows);
        content_bias, position_bias, segment_bias [n, dh] (u, v, s); segment_embedding
        [2, n, dh]; segment_different bool [B, L, M+L] and query_segment_different bool
        [B, K, M+L] (None: no segment term); content_mask bool [B, L, M+L] and query_mask bool
        [B, K, M+L], True = blocked (None: nothing blocked); target_positions int32 [B, K];
        target_weights [B, K] (0 for padding target rows, whose attention output is zeroed).
        Returns (content_out [B, L, d], query_out [B, K, d] or None).
        """
        dtype = self.compute_dtype
        content = tf.cast(content, dtype)
        keys_in = content if memory is None else tf.concat([tf.cast(memory, dtype), content], 1)
        q_len, k_len = content.shape[1], keys_in.shape[1]
        biases = tuple(tf.cast(b, dtype) for b in
                       (content_bias, position_bias, segment_bias, segment_embedding))

        key = tf.einsum("bjd,dnh->bjnh", keys_in, tf.cast(self.k_kernel, dtype))  # [B,M+L,n,dh]
        value = tf.einsum("bjd,dnh->bjnh", keys_in, tf.cast(self.v_kernel, dtype))
        position_key = tf.einsum("xrd,dnh->xrnh", tf.cast(positional_encoding, dtype),
                                 tf.cast(self.r_kernel, dtype))  # [X, R, n, dh]

        content_query = tf.einsum("bid,dnh->binh", content, tf.cast(self.q_kernel, dtype))
        content_out = self._content_stream(content_query, key, value, position_key, biases,
                                           segment_different, content_mask, k_len,
                                           training, seed)
        query_out = None
        if query is not None:
            query_heads = tf.einsum("bkd,dnh->bknh", tf.cast(query, dtype),
                                    tf.cast(self.q_kernel, dtype))  # [B, K, n, dh]
            query_out = self._query_stream(query_heads, key, value, position_key, biases,
                                           query_segment_different, query_mask,
                                           target_positions, target_weights, q_len, k_len,
                                           training, seed)
        return content_out, query_out

    def _content_stream(self, q, key, value, position_key, biases, segment_different, mask,
                        k_len, training, seed):
        u, v, s, segment_embedding = biases
        content_scores = tf.einsum("binh,bjnh->bnij", q + u, key)  # [B, n, L, M+L]
        position_scores = rel_shift(
            _per_direction_scores(q + v, position_key, "xbinh,xrnh->xbnir"), k_len)
        scores = content_scores + position_scores
        if segment_different is not None:
            segment_scores = tf.einsum("binh,snh->bnis", q + s, segment_embedding)  # [B,n,L,2]
            scores += tf.where(segment_different[:, None],
                               segment_scores[..., 1:], segment_scores[..., :1])
        mask = None if mask is None else mask[:, None]  # [B, 1, L, M+L]
        probs = self._attention_probs(scores, mask, training, seed, site=0)  # [B, n, L, M+L]
        attended = tf.einsum("bnij,bjnh->binh", probs, value)  # [B, L, n, dh]
        return self._output(attended, training, seed, site=2)

    def _query_stream(self, q, key, value, position_key, biases, segment_different, mask,
                      target_positions, target_weights, q_len, k_len, training, seed):
        u, v, s, segment_embedding = biases
        content_scores = tf.einsum("bknh,bjnh->bknj", q + u, key)  # [B, K, n, M+L]
        position_scores = target_rel_shift(
            _per_direction_scores(q + v, position_key, "xbknh,xrnh->xbknr"),
            target_positions, q_len, k_len)  # [B, K, n, M+L]
        scores = content_scores + position_scores
        if segment_different is not None:
            segment_scores = tf.einsum("bknh,snh->bkns", q + s, segment_embedding)  # [B,K,n,2]
            scores += tf.where(segment_different[:, :, None],
                               segment_scores[..., 1:], segment_scores[..., :1])
        mask = None if mask is None else mask[:, :, None]  # [B, K, 1, M+L]
        probs = self._attention_probs(scores, mask, training, seed, site=1)  # [B, K, n, M+L]
        attended = tf.einsum("bknj,bjnh->bknh", probs, value)  # [B, K, n, dh]
        # The original scatters queries to L rows and gathers back with target_mapping: a
        # padding (all-zero) target row gets a zero attention output.
        attended *= tf.cast(target_weights, attended.dtype)[:, :, None, None]
        return self._output(attended, training, seed, site=3)

    def _attention_probs(self, scores, mask, training, seed, site):
        """Scaled, masked softmax over the key axis in float32, then dropatt."""
        scores = tf.cast(scores, tf.float32) * self.scale
        if mask is not None:
            scores -= MASKED_SCORE * tf.cast(mask, tf.float32)
        probs = tf.cast(tf.nn.softmax(scores, axis=-1), self.compute_dtype)
        return stateless_dropout(probs, self.dropatt, seed, self.dropout_site + site, training)

    def _output(self, attended, training, seed, site):
        projected = tf.einsum("btnh,dnh->btd", attended,
                              tf.cast(self.o_kernel, self.compute_dtype))  # [B, T, d]
        return stateless_dropout(projected, self.dropout, seed, self.dropout_site + site,
                                 training)


def _per_direction_scores(queries, position_key, equation):
    """Scores of [B, T, n, dh] queries against [X, R, n, dh] position keys, the first B/X rows
    against direction 0 and so on; the position keys are computed once per direction, not
    per example. Returns [B, ...] in the equation's output layout after its `xb`."""
    directions = position_key.shape[0]
    grouped = tf.reshape(queries, [directions, -1] + queries.shape[1:].as_list())  # [X,B/X,..]
    scores = tf.einsum(equation, grouped, position_key)  # [X, B/X, ...]
    return tf.reshape(scores, [-1] + scores.shape[2:].as_list())  # [B, ...]
