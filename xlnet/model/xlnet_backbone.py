"""XLNetBackbone: embeddings, the shared relative encodings and masks, and the stack of
two-stream layers with memory caching (the original's `transformer_xl`, original-xlnet.md §6)."""

import keras
import tensorflow as tf

from xlnet.model import dropout as sites
from xlnet.model.dropout import stateless_dropout
from xlnet.model.feed_forward import FeedForward
from xlnet.model.positional_encoding import relative_positional_encoding, relative_segment_matrix
from xlnet.model.relative_attention import RelativeAttention

LAYER_NORM_EPSILON = 1e-12
REMAT_CHOICES = ("none", "layer")


class XLNetBackbone(keras.layers.Layer):
    """Variables in the original checkpoint's shapes; `original_variables()` names them."""

    def __init__(self, config, remat="none", **kwargs):
        """`remat="layer"`: when training, keep only each layer's inputs for the backward pass
        and recompute the layer's activations there (tf.recompute_grad)."""
        super().__init__(**kwargs)
        if remat not in REMAT_CHOICES:
            raise ValueError(f"remat: one of {', '.join(REMAT_CHOICES)}, got {remat!r}")
        self.config = config
        self.remat = remat
        c = config
        normal = keras.initializers.RandomNormal(stddev=0.02)
        self.word_embedding = self.add_weight(shape=(c.n_token, c.d_model), initializer=normal,
                                              name="word_embedding")
        # The original gives mask_emb no initializer, so TF1 used glorot-uniform (QUIRK Q20).
        self.mask_emb = self.add_weight(shape=(1, 1, c.d_model),
                                        initializer=keras.initializers.GlorotUniform(),
                                        name="mask_emb")
        bias_shape = (c.n_layer, c.n_head, c.d_head) if c.untie_r else (c.n_head, c.d_head)
        self.content_bias = self.add_weight(shape=bias_shape, initializer=normal,
                                            name="r_w_bias")
        self.position_bias = self.add_weight(shape=bias_shape, initializer=normal,
                                             name="r_r_bias")
        self.segment_bias = self.add_weight(shape=bias_shape, initializer=normal,
                                            name="r_s_bias")
        self.segment_embedding = self.add_weight(shape=(c.n_layer, 2, c.n_head, c.d_head),
                                                 initializer=normal, name="seg_embed")
        policy = self.dtype_policy
        self.attention_layers, self.attention_norms = [], []
        self.feed_forward_layers, self.feed_forward_norms = [], []
        for i in range(c.n_layer):
            self.attention_layers.append(RelativeAttention(
                c.d_model, c.n_head, c.d_head, c.dropout, c.dropatt,
                dropout_site=sites.layer_site(i), dtype=policy, name=f"layer_{i}_rel_attn"))
            self.feed_forward_layers.append(FeedForward(
                c.d_model, c.d_inner, c.ff_activation, c.dropout,
                dropout_site=sites.layer_site(i) + sites.FEED_FORWARD_SITE_OFFSET,
                dtype=policy, name=f"layer_{i}_ff"))
            for norms, kind in ((self.attention_norms, "rel_attn"),
                                (self.feed_forward_norms, "ff")):
                norm = keras.layers.LayerNormalization(
                    epsilon=LAYER_NORM_EPSILON, dtype=policy, name=f"layer_{i}_{kind}_LayerNorm")
                norm.build((None, None, c.d_model))
                norms.append(norm)
        self.built = True

    def original_variables(self):
        """Original TF1 checkpoint name (original-xlnet.md §7.1) -> variable, in the original's
        shape."""
        prefix = "model/transformer"
        names = {f"{prefix}/word_embedding/lookup_table": self.word_embedding,
                 f"{prefix}/mask_emb/mask_emb": self.mask_emb,
                 f"{prefix}/r_w_bias": self.content_bias,
                 f"{prefix}/r_r_bias": self.position_bias,
                 f"{prefix}/r_s_bias": self.segment_bias,
                 f"{prefix}/seg_embed": self.segment_embedding}
        for i in range(self.config.n_layer):
            layer = f"{prefix}/layer_{i}"
            names.update(self.attention_layers[i].original_variables(f"{layer}/rel_attn"))
            names.update(self.feed_forward_layers[i].original_variables(f"{layer}/ff"))
            for norm, kind in ((self.attention_norms[i], "rel_attn"),
                               (self.feed_forward_norms[i], "ff")):
                names[f"{layer}/{kind}/LayerNorm/gamma"] = norm.gamma
                names[f"{layer}/{kind}/LayerNorm/beta"] = norm.beta
        return names

    def call(self, input_ids, segment_ids=None, perm_mask=None, target_mapping=None,
             mems=None, memory_length=None, training=False, seed=None, memory_share=False):
        """Inputs as XLNetLM's (batch-major); `segment_ids` None drops the segment term, as
        the original does. Returns {"features": [B, L, d] last content output,
        "query_output": [B, K, d] dropped-out last query output (None without
        target_mapping), "new_mems": float32 [B, N, M, d] (None when mem_len is 0)}, and with
        `memory_share` and `mems` "memory_share": float32 [N], each layer's mean content-stream
        attention probability on the memory slots."""
        c = self.config
        dtype = self.compute_dtype
        batch = tf.shape(input_ids)[0]
        q_len = input_ids.shape[1]
        m_len = 0 if mems is None else mems.shape[2]
        k_len = m_len + q_len

        word_vectors = tf.cast(tf.gather(self.word_embedding, input_ids), dtype)  # [B, L, d]
        content = stateless_dropout(word_vectors, c.dropout, seed, sites.WORD_EMBEDDING_SITE,
                                    training)
        query = target_positions = target_weights = None
        if target_mapping is not None:
            target_mapping = tf.cast(target_mapping, tf.float32)
            num_targets = target_mapping.shape[1]
            query = tf.tile(tf.cast(self.mask_emb, dtype), [batch, num_targets, 1])  # [B, K, d]
            query = stateless_dropout(query, c.dropout, seed, sites.MASK_EMBEDDING_SITE,
                                      training)
            target_positions = tf.argmax(target_mapping, axis=-1, output_type=tf.int32)  # [B,K]
            target_weights = tf.reduce_sum(target_mapping, axis=-1)  # [B, K]

        content_mask, query_mask = self._attention_masks(batch, q_len, m_len, perm_mask,
                                                         memory_length)
        segment_different = query_segment_different = None
        if segment_ids is not None:
            segment_different = relative_segment_matrix(segment_ids, m_len)  # [B, L, M+L]
        if target_positions is not None:
            query_mask = _rows_at(query_mask, target_positions)  # [B, K, M+L]
            query_segment_different = _rows_at(segment_different, target_positions)

        if c.bi_data:
            tf.debugging.assert_equal(batch % 2, 0, message="bi_data needs an even batch size")
        positional_encoding = relative_positional_encoding(
            q_len, k_len, c.d_model, c.bi_data, c.clamp_len)  # [X, M+2L, d]
        positional_encoding = stateless_dropout(tf.cast(positional_encoding, dtype), c.dropout,
                                                seed, sites.POSITIONAL_ENCODING_SITE, training)

        new_mems, shares = [], []
        share = memory_share and mems is not None
        for i in range(c.n_layer):
            memory = None if mems is None else mems[:, i]  # [B, M, d]
            if c.mem_len > 0:
                new_mems.append(self._cache(memory, content))

            def layer(*streams, i=i, memory=memory):
                """[content [B, L, d], query [B, K, d] when there are targets] -> the same.
                Only the streams are arguments: tf.recompute_grad differentiates its
                arguments and the variables read inside, so the per-layer slices of the
                biases are taken in here; everything else it closes over needs no gradient
                (memory carries none, masks and encodings come from the inputs)."""
                content, query = streams if len(streams) == 2 else (streams[0], None)
                content_out, query_out, *layer_share = self.attention_layers[i](
                    content, query, memory=memory, positional_encoding=positional_encoding,
                    content_bias=self._layer_bias(self.content_bias, i),
                    position_bias=self._layer_bias(self.position_bias, i),
                    segment_bias=self._layer_bias(self.segment_bias, i),
                    segment_embedding=self.segment_embedding[i],
                    segment_different=segment_different,
                    query_segment_different=query_segment_different,
                    content_mask=content_mask, query_mask=query_mask,
                    target_positions=target_positions, target_weights=target_weights,
                    training=training, seed=seed, memory_share=share)
                shares.extend(layer_share)
                content = self._feed_forward(i, self.attention_norms[i](content_out + content),
                                             training, seed, site_offset=0)
                if query is None:
                    return (content,)
                query = self._feed_forward(i, self.attention_norms[i](query_out + query),
                                           training, seed, site_offset=2)
                return content, query

            if training and self.remat == "layer":
                # Dropout masks are functions of (seed, site), so the recomputation drops the
                # same units as the forward pass.
                layer = tf.recompute_grad(layer)
            streams = layer(content) if query is None else layer(content, query)
            content, query = (streams[0], None) if query is None else streams

        if query is not None:
            query = stateless_dropout(query, c.dropout, seed, sites.FINAL_QUERY_STREAM_SITE,
                                      training)
        outputs = {"features": content, "query_output": query,
                   "new_mems": tf.stack(new_mems, axis=1) if new_mems else None}
        if share:
            outputs["memory_share"] = tf.stack(shares)  # [N]
        return outputs

    def _feed_forward(self, i, inputs, training, seed, site_offset):
        output = self.feed_forward_layers[i](inputs, training=training, seed=seed,
                                             site_offset=site_offset)
        return self.feed_forward_norms[i](output + inputs)

    def _layer_bias(self, bias, i):
        return bias[i] if self.config.untie_r else bias

    def _cache(self, memory, content_input):
        """The last M rows of [memory ; content_input[:, :reuse_len]], float32, no gradient.

        Without a memory the rows before the cached ones are zeros; feed `memory_length` with
        the next segment to keep them unattendable (as a model that had no memory would)."""
        c = self.config
        reused = content_input if c.reuse_len <= 0 else content_input[:, :c.reuse_len]
        reused = tf.cast(reused, tf.float32)  # [B, R, d]
        if memory is None:
            padding = max(c.mem_len - reused.shape[1], 0)
            memory = tf.zeros([tf.shape(reused)[0], padding, c.d_model], tf.float32)
        cached = tf.concat([tf.cast(memory, tf.float32), reused], axis=1)[:, -c.mem_len:]
        return tf.stop_gradient(cached)  # [B, M, d]

    def _attention_masks(self, batch, q_len, m_len, perm_mask, memory_length):
        """(content mask, query mask), bool [B, L, M+L], True = blocked (original-xlnet.md
        §5.6); (None, None) when nothing is blocked. The content stream may always see its own
        position."""
        k_len = m_len + q_len
        blocked = None

        def add(more):
            return more if blocked is None else tf.logical_or(blocked, more)

        if perm_mask is not None:
            blocked = tf.concat([tf.zeros([batch, q_len, m_len], tf.bool),
                                 tf.cast(perm_mask, tf.float32) > 0], axis=2)  # [B, L, M+L]
        if self.config.attn_type == "uni":
            future = tf.range(k_len)[None, :] > (tf.range(q_len) + m_len)[:, None]  # [L, M+L]
            blocked = add(future[None])
        if memory_length is not None:
            hidden_slots = tf.range(k_len)[None, :] < (
                m_len - tf.cast(memory_length, tf.int32))[:, None]  # [B, M+L]
            blocked = add(hidden_slots[:, None])
        if blocked is None:
            return None, None
        blocked = tf.broadcast_to(blocked, [batch, q_len, k_len])  # [B, L, M+L]
        own_position = tf.concat([tf.zeros([q_len, m_len], tf.bool),
                                  tf.cast(tf.eye(q_len), tf.bool)], axis=1)  # [L, M+L]
        return tf.logical_and(blocked, tf.logical_not(own_position)[None]), blocked


def _rows_at(rows, positions):
    """rows [B, L, ...] (or None) -> the rows at positions [B, K]: [B, K, ...]."""
    return None if rows is None else tf.gather(rows, positions, axis=1, batch_dims=1)
