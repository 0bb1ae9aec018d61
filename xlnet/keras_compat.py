"""keras-xlnet's API on this library: `Tokenizer`, `build_xlnet`,
`load_trained_model_from_checkpoint`, `ATTENTION_TYPE_UNI`, `ATTENTION_TYPE_BI`.

The functional graph carries keras-xlnet's inputs (Input-Token, Input-Segment,
Input-Memory-Length, and Input-Mask when training) and layer names (Embed-Token, Memory-0,
Embed-Pos, Permutation, Attention-1, Attention-Normal-1, FeedForward-1, ...), so code written
for keras-xlnet keeps working; the attention and feed-forward layers are the library's own.

Where keras-xlnet and the original differ, this follows the original:
- Input-Mask (1 = predict): every query is blocked from every masked key (a masked position's
  content stream still sees itself, its query stream does not), so masked tokens are predicted
  from the unmasked context only and no masked token's id can reach a prediction.
- Input-Memory-Length is read per batch row; the memory of each row lives in the Memory-l
  layers between calls and holds the last `memory_len` content inputs of that layer.
- GELU is the original's tanh approximation; LayerNorm epsilon is 1e-12.
- Tokenizer normalises text as the original (and the pipeline) does, `` and '' included, and
  its SYM_EOP is the vocabulary's <eop>, 8 (keras-xlnet has 9).
"""

import keras
import tensorflow as tf

from xlnet.model import dropout as sites
from xlnet.config.model_config import XLNetConfig
from xlnet.model.dropout import stateless_dropout
from xlnet.errors import UserError
from xlnet.model.feed_forward import FeedForward
from xlnet.formats.original_checkpoint import (LM_BIAS, PREFIX, layer_biases, layer_prefix,
                                       read_original_checkpoint)
from xlnet.model.positional_encoding import relative_positional_encoding, relative_segment_matrix
from xlnet.model.relative_attention import RelativeAttention
from xlnet import tokenizer as pipeline_tokenizer
from xlnet.schema import PAD_ID, SPECIAL_PIECES
from xlnet.model.xlnet_backbone import LAYER_NORM_EPSILON

ATTENTION_TYPE_UNI = "uni"
ATTENTION_TYPE_BI = "bi"
INT32_MAX = 2**31 - 1


class Tokenizer:
    """keras-xlnet's Tokenizer: `tokenize` (pieces), `encode` (ids), `decode`, the `SYM_*` ids.

    The text handling is the pipeline's (xlnet.tokenizer.Tokenizer): the original's
    normalisation with these switches and its digit-comma fix-up (`2000,` -> `2000` `,`).
    """

    SPM_UNDERLINE = pipeline_tokenizer.WORD_START
    (SYM_UNK, SYM_BOS, SYM_EOS, SYM_CLS, SYM_SEP, SYM_PAD, SYM_MASK, SYM_EOD,
     SYM_EOP) = range(len(SPECIAL_PIECES))

    def __init__(self, spm_path, remove_spaces=True, remove_accents=False, cased=True,
                 sample=False):
        self.remove_spaces, self.remove_accents = remove_spaces, remove_accents
        self.cased, self.sample = cased, sample
        self.tokenizer = pipeline_tokenizer.Tokenizer.load(spm_path)

    def encode(self, text):
        """The ids of `text`, a list of ints."""
        text = pipeline_tokenizer.normalize_text(text, uncased=not self.cased,
                                                 keep_accents=not self.remove_accents,
                                                 remove_spaces=self.remove_spaces)
        return self.tokenizer.encode_normalized([text], sample=self.sample)[0].tolist()

    def tokenize(self, text):
        """The pieces of `text`, e.g. ['▁All', "'", 's', ...]."""
        return [self.tokenizer.id_to_piece(i) for i in self.encode(text)]

    def decode(self, ids):
        return self.tokenizer.decode(ids)


class TokenEmbedding(keras.layers.Layer):
    """Embed-Token: returns the embedded tokens and the table (the tied softmax needs it)."""

    def __init__(self, num_token, units, **kwargs):
        super().__init__(**kwargs)
        self.embeddings = self.add_weight(
            shape=(num_token, units), initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="embeddings")

    def call(self, token_ids):
        table = tf.convert_to_tensor(self.embeddings)  # [V, d]
        return tf.gather(table, tf.cast(token_ids, tf.int32)), table  # [B, L, d], [V, d]


class PaddingMask(keras.layers.Layer):
    """Masking: True where the token is padding (`mask_index`); padding keys are blocked."""

    def __init__(self, mask_index, **kwargs):
        super().__init__(**kwargs)
        self.mask_index = mask_index

    def call(self, token_ids):
        token_ids = tf.cast(token_ids, tf.int32)  # [B, L]
        if self.mask_index is None:
            return tf.zeros_like(token_ids, tf.bool)
        return tf.equal(token_ids, self.mask_index)


class RestoreMask(keras.layers.Layer):
    """Embed-Token-Masked: the token embeddings, where keras-xlnet re-attaches the padding
    mask to them. Here the padding reaches the attention through Masking and Permutation, so
    the values pass unchanged; the layer keeps keras-xlnet's graph and name."""

    def call(self, token_embed, padding):
        return token_embed


class MaskEmbedding(keras.layers.Layer):
    """Embed-Mask: the query stream input, `mask_emb` at positions to predict and the token
    embedding elsewhere (the original's `input_q` form)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        # The original gives mask_emb no initializer: TF1's glorot-uniform (QUIRK Q20).
        self.mask_emb = self.add_weight(shape=(1, 1, units), initializer="glorot_uniform",
                                        name="mask_emb")

    def call(self, token_embed, predict):
        predict = tf.cast(predict, tf.bool)[:, :, None]  # [B, L, 1]
        return tf.where(predict, tf.cast(self.mask_emb, token_embed.dtype), token_embed)


class DropoutSeed(keras.layers.Layer):
    """A fresh int32 [2] seed per call, from which every dropout site derives its mask."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, token_ids):
        return keras.random.randint((2,), 0, INT32_MAX, dtype="int32",
                                    seed=self.seed_generator)


class SiteDropout(keras.layers.Layer):
    """The library's stateless dropout at one numbered site."""

    def __init__(self, rate, site, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.site = rate, site

    def call(self, inputs, seed, training=False):
        return stateless_dropout(inputs, self.rate, seed, self.site, training)


class Memory(keras.layers.Layer):
    """Memory-l: the content inputs of layer l from earlier calls, one row per batch row.

    The weight is laid out as keras-xlnet's, [batch_size, memory_len + target_len, d]: after a
    call it holds the memory that call read followed by the call's own inputs. A call reads
    the last `memory_len` rows stored before it and returns them [B, memory_len, d]. A call
    with fewer rows than `batch_size` uses and updates the first rows only (keras-xlnet
    overwrites the others with copies of row 0). With memory_len 0 there is no weight.
    """

    def __init__(self, batch_size, memory_len, target_len, output_dim, **kwargs):
        super().__init__(**kwargs)
        self.batch_size, self.memory_len = batch_size, memory_len
        self.target_len, self.output_dim = target_len, output_dim
        if memory_len > 0:
            self.memory = self.add_weight(
                shape=(batch_size, memory_len + target_len, output_dim), initializer="zeros",
                trainable=False, name="memory")

    def call(self, inputs):
        rows = tf.shape(inputs)[0]
        if self.memory_len == 0:
            return tf.zeros([rows, 0, self.output_dim], tf.float32)
        stored = tf.convert_to_tensor(self.memory)[:rows]  # [B, M+T, d]
        kept = self.memory_len + self.target_len
        updated = tf.concat([stored, tf.cast(inputs, tf.float32)], axis=1)[:, -kept:]
        self.memory.assign(tf.concat([tf.stop_gradient(updated), self.memory[rows:]], axis=0))
        return stored[:, -self.memory_len:]

    def get_config(self):
        return {**super().get_config(), "batch_size": self.batch_size,
                "memory_len": self.memory_len, "target_len": self.target_len,
                "output_dim": self.output_dim}


class PositionalEmbedding(keras.layers.Layer):
    """Embed-Pos: the sinusoid table [1, M+2L, d] for the distances the attention reads."""

    def __init__(self, output_dim, clamp_len, **kwargs):
        super().__init__(**kwargs)
        self.output_dim, self.clamp_len = output_dim, clamp_len

    def call(self, token_embed, memory):
        q_len = token_embed.shape[1]
        return relative_positional_encoding(q_len, memory.shape[1] + q_len, self.output_dim,
                                            bi_data=False, clamp_len=self.clamp_len)


class PermutationMask(keras.layers.Layer):
    """Permutation: (content mask, query mask), bool [B, L, M+L], True = blocked.

    Blocked for every query: memory slots before the last `memory_length` of the row, padding
    keys, keys to predict (Input-Mask), and with `uni` later keys. The content stream may always
    see its own position; the query stream may not when that position is to be predicted.
    """

    def __init__(self, directional, **kwargs):
        super().__init__(**kwargs)
        self.directional = directional

    def call(self, padding, memory, memory_length, predict=None):
        batch, q_len, m_len = tf.shape(padding)[0], padding.shape[1], memory.shape[1]
        hidden = padding if predict is None else tf.logical_or(padding, tf.cast(predict, tf.bool))
        valid_memory = tf.minimum(tf.cast(tf.reshape(memory_length, [-1]), tf.int32), m_len)
        hidden_memory = tf.range(m_len)[None, :] < (m_len - valid_memory)[:, None]  # [B, M]
        blocked_keys = tf.concat([hidden_memory, hidden], axis=1)  # [B, M+L]
        blocked = tf.broadcast_to(blocked_keys[:, None, :], [batch, q_len, m_len + q_len])
        positions = tf.range(q_len)
        if self.directional:
            later = tf.range(m_len + q_len)[None, :] > (positions + m_len)[:, None]  # [L, M+L]
            blocked = tf.logical_or(blocked, later[None])
        own = tf.concat([tf.zeros([q_len, m_len], tf.bool),
                         tf.equal(positions[:, None], positions[None, :])], axis=1)  # [L, M+L]
        return tf.logical_and(blocked, tf.logical_not(own)[None]), blocked


class RelativeBias(keras.layers.Layer):
    """Relative-Bias[-i]: the content bias u (r_w_bias) and position bias v (r_r_bias)."""

    def __init__(self, num_head, head_dim, **kwargs):
        super().__init__(**kwargs)
        normal = keras.initializers.RandomNormal(stddev=0.02)
        self.content_bias = self.add_weight(shape=(num_head, head_dim), initializer=normal,
                                            name="r_w_bias")
        self.position_bias = self.add_weight(shape=(num_head, head_dim), initializer=normal,
                                             name="r_r_bias")

    def call(self, memory):
        return tf.convert_to_tensor(self.content_bias), tf.convert_to_tensor(self.position_bias)


class SegmentBias(keras.layers.Layer):
    """Segment-Bias[-i]: the segment bias s (r_s_bias)."""

    def __init__(self, num_head, head_dim, **kwargs):
        super().__init__(**kwargs)
        self.segment_bias = self.add_weight(
            shape=(num_head, head_dim), initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="r_s_bias")

    def call(self, memory):
        return tf.convert_to_tensor(self.segment_bias)


class RelativeSegmentEmbedding(keras.layers.Layer):
    """Embed-Segment-i: which keys are in another segment (memory counts as segment 0) and
    this layer's `seg_embed` [2, n, dh] (0 = same segment, 1 = different)."""

    def __init__(self, num_head, head_dim, **kwargs):
        super().__init__(**kwargs)
        self.segment_embedding = self.add_weight(
            shape=(2, num_head, head_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02), name="seg_embed")

    def call(self, segment_ids, memory):
        different = relative_segment_matrix(segment_ids, memory.shape[1])  # [B, L, M+L]
        return different, tf.convert_to_tensor(self.segment_embedding)


class AllPositionsAttention(RelativeAttention):
    """The library's RelativeAttention with the query stream at every position (keras-xlnet
    returns a prediction for each of the target_len positions). Returns the content output,
    or (content output, query output) when given a query stream."""

    def call(self, content, query=None, **kwargs):
        if query is None:
            return super().call(content, None, **kwargs)[0]
        batch, q_len = tf.shape(query)[0], query.shape[1]
        kwargs["target_positions"] = tf.tile(tf.range(q_len)[None], [batch, 1])  # [B, L]
        kwargs["target_weights"] = tf.ones([batch, q_len], tf.float32)
        kwargs["query_segment_different"] = kwargs.get("segment_different")
        return super().call(content, query, **kwargs)


class TiedSoftmax(keras.layers.Layer):
    """Softmax: token probabilities from the tied embedding table and `lm_loss/bias`."""

    def __init__(self, num_token, **kwargs):
        super().__init__(**kwargs)
        self.bias = self.add_weight(shape=(num_token,), initializer="zeros", name="lm_bias")

    def call(self, query_output, table):
        logits = tf.einsum("bld,vd->blv", tf.cast(query_output, tf.float32),
                           tf.cast(table, tf.float32))  # [B, L, V]
        return tf.nn.softmax(logits + self.bias, axis=-1)


def get_custom_objects():
    """keras-xlnet's helper: the classes `keras.models.load_model` needs for a saved model."""
    return {layer.__name__: layer for layer in (
        TokenEmbedding, PaddingMask, RestoreMask, MaskEmbedding, DropoutSeed, SiteDropout, Memory,
        PositionalEmbedding, PermutationMask, RelativeBias, SegmentBias,
        RelativeSegmentEmbedding, AllPositionsAttention, FeedForward, TiedSoftmax)}


def build_xlnet(units, training, num_token, num_block, num_head, hidden_dim, batch_size,
                memory_len, target_len, permute=None, mask_index=PAD_ID, dropout=0.0,
                attention_dropout=0.0, attention_type=ATTENTION_TYPE_BI,
                feed_forward_activation="gelu", clamp_len=None, shared_biases=True,
                head_dim=None, seed=None):
    """keras-xlnet's `build_xlnet`: a functional model with its inputs and layer names.

    Outputs features [B, target_len, units], or with `training` token probabilities
    [B, target_len, num_token]. `head_dim` defaults to units // num_head; `seed` seeds dropout.
    """
    _check_arguments(training, permute, batch_size, memory_len, attention_type,
                     feed_forward_activation)
    graph = _Graph(units=units, num_head=num_head, head_dim=head_dim or units // num_head,
                   hidden_dim=hidden_dim, dropout=dropout, attention_dropout=attention_dropout,
                   activation=feed_forward_activation)
    token_input = keras.Input(shape=(target_len,), name="Input-Token", dtype="int32")
    segment_input = keras.Input(shape=(target_len,), name="Input-Segment", dtype="int32")
    memory_length_input = keras.Input(shape=(1,), name="Input-Memory-Length", dtype="int32")
    inputs = [token_input, segment_input, memory_length_input]
    predict_input = None
    if training:
        predict_input = keras.Input(shape=(target_len,), name="Input-Mask", dtype="int32")
        inputs.append(predict_input)
    memory_kwargs = dict(batch_size=batch_size, memory_len=memory_len, target_len=target_len,
                         output_dim=units)

    token_embed, table = TokenEmbedding(num_token, units, name="Embed-Token")(token_input)
    padding = PaddingMask(mask_index, name="Masking")(token_input)
    if mask_index is not None:
        token_embed = RestoreMask(name="Embed-Token-Masked")(token_embed, padding)
    query = MaskEmbedding(units, name="Embed-Mask")(token_embed, predict_input) \
        if training else None
    if dropout > 0 or attention_dropout > 0:
        graph.seed = DropoutSeed(seed, name="Dropout-Seed")(token_input)
    token_embed = graph.dropout_at(token_embed, sites.WORD_EMBEDDING_SITE, "Embed-Token-Dropout")
    if training:
        query = graph.dropout_at(query, sites.MASK_EMBEDDING_SITE, "Embed-Mask-Dropout")

    memory = Memory(**memory_kwargs, name="Memory-0")(token_embed)
    graph.positional = graph.dropout_at(
        PositionalEmbedding(units, -1 if clamp_len is None else clamp_len,
                            name="Embed-Pos")(token_embed, memory),
        sites.POSITIONAL_ENCODING_SITE, "Embed-Pos-Dropout")
    graph.masks = PermutationMask(attention_type == ATTENTION_TYPE_UNI, name="Permutation")(
        padding, memory, memory_length_input, predict_input)
    if shared_biases:
        graph.biases = graph.biases_for(memory, "")

    content = token_embed
    for i in range(num_block):
        if not shared_biases:
            graph.biases = graph.biases_for(memory, f"-{i + 1}")
        content, query = graph.block(i, content, query, memory, segment_input)
        if i + 1 < num_block:
            memory = Memory(**memory_kwargs, name=f"Memory-{i + 1}")(content)

    if not training:
        return keras.Model(inputs=inputs, outputs=content)
    query = graph.dropout_at(query, sites.FINAL_QUERY_STREAM_SITE, "Query-Dropout")
    probabilities = TiedSoftmax(num_token, name="Softmax")(query, table)
    return keras.Model(inputs=inputs, outputs=probabilities)


class _Graph:
    """The sizes and rates of a build_xlnet graph and the tensors every block shares."""

    def __init__(self, units, num_head, head_dim, hidden_dim, dropout, attention_dropout,
                 activation):
        self.units, self.num_head, self.head_dim = units, num_head, head_dim
        self.hidden_dim, self.activation = hidden_dim, activation
        self.dropout, self.attention_dropout = dropout, attention_dropout
        self.seed = self.positional = self.masks = self.biases = None

    def dropout_at(self, tensor, site, name):
        if self.dropout == 0:
            return tensor
        return SiteDropout(self.dropout, site, name=name)(tensor, self.seed)

    def biases_for(self, memory, suffix):
        """((u, v), s) from Relative-Bias / Segment-Bias layers named with `suffix`."""
        return (RelativeBias(self.num_head, self.head_dim, name=f"Relative-Bias{suffix}")(memory),
                SegmentBias(self.num_head, self.head_dim, name=f"Segment-Bias{suffix}")(memory))

    def block(self, i, content, query, memory, segment_input):
        """Layer i+1 for both streams: attention, residual, LayerNorm, FFN, residual, LayerNorm
        (the same layers, so the same weights, for the content and the query stream)."""
        block = i + 1
        (content_bias, position_bias), segment_bias = self.biases
        segment_different, segment_embedding = RelativeSegmentEmbedding(
            self.num_head, self.head_dim, name=f"Embed-Segment-{block}")(segment_input, memory)
        content_mask, query_mask = self.masks
        attended = AllPositionsAttention(
            self.units, self.num_head, self.head_dim, self.dropout, self.attention_dropout,
            dropout_site=sites.layer_site(i), name=f"Attention-{block}")(
                content, query, memory=memory, positional_encoding=self.positional,
                content_bias=content_bias, position_bias=position_bias,
                segment_bias=segment_bias, segment_embedding=segment_embedding,
                segment_different=segment_different, content_mask=content_mask,
                query_mask=query_mask, seed=self.seed)
        attention_add = keras.layers.Add(name=f"Attention-Residual-{block}")
        attention_norm = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, name=f"Attention-Normal-{block}")
        feed_forward = FeedForward(
            self.units, self.hidden_dim, self.activation, self.dropout,
            dropout_site=sites.layer_site(i) + sites.FEED_FORWARD_SITE_OFFSET,
            name=f"FeedForward-{block}")
        feed_forward_add = keras.layers.Add(name=f"FeedForward-Residual-{block}")
        feed_forward_norm = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, name=f"FeedForward-Normal-{block}")

        def finish(stream, stream_attended, site_offset):
            normed = attention_norm(attention_add([stream, stream_attended]))
            transformed = feed_forward(normed, seed=self.seed, site_offset=site_offset)
            return feed_forward_norm(feed_forward_add([normed, transformed]))

        if query is None:
            return finish(content, attended, 0), None
        content_attended, query_attended = attended
        query = finish(query, query_attended, 2)
        return finish(content, content_attended, 0), query


def _check_arguments(training, permute, batch_size, memory_len, attention_type, activation):
    if permute:
        raise UserError("permute: random factorization orders are not supported here; "
                        "Input-Mask positions are predicted from the unmasked context")
    if attention_type not in (ATTENTION_TYPE_UNI, ATTENTION_TYPE_BI):
        raise UserError(f"attention_type: {attention_type!r} is not 'uni' or 'bi'")
    if memory_len < 0:
        raise UserError(f"memory_len: must be >= 0, got {memory_len}")
    if memory_len > 0 and not batch_size:
        raise UserError("batch_size: needed when memory_len > 0 (memory is kept per batch "
                        "row); pass the largest batch you will feed")
    if activation not in ("gelu", "relu"):
        raise UserError(f"feed_forward_activation: {activation!r} is not 'gelu' or 'relu'")


def _weight_assignments(model, arrays, config, in_train_phase):
    """[(variable, value)] for every weight of a build_xlnet model, all checked first."""
    pairs = [(model.get_layer("Embed-Token").embeddings,
              arrays[f"{PREFIX}/word_embedding/lookup_table"])]
    if in_train_phase:
        pairs += [(model.get_layer("Embed-Mask").mask_emb, arrays[f"{PREFIX}/mask_emb/mask_emb"]),
                  (model.get_layer("Softmax").bias, arrays[LM_BIAS])]
    for i in range(config.n_layer):
        block, prefix = i + 1, layer_prefix(i)
        bias_suffix = f"-{block}" if config.untie_r else ""
        relative = model.get_layer(f"Relative-Bias{bias_suffix}")
        content_bias, position_bias, segment_bias = layer_biases(arrays, config, i)
        pairs += [(relative.content_bias, content_bias), (relative.position_bias, position_bias),
                  (model.get_layer(f"Segment-Bias{bias_suffix}").segment_bias, segment_bias),
                  (model.get_layer(f"Embed-Segment-{block}").segment_embedding,
                   arrays[f"{PREFIX}/seg_embed"][i])]
        attention = model.get_layer(f"Attention-{block}")
        pairs += [(variable, arrays[name]) for name, variable in
                  attention.original_variables(f"{prefix}/rel_attn").items()]
        pairs += [(variable, arrays[name]) for name, variable in
                  model.get_layer(f"FeedForward-{block}").original_variables(
                      f"{prefix}/ff").items()]
        for kind, layer in (("rel_attn", "Attention-Normal"), ("ff", "FeedForward-Normal")):
            norm = model.get_layer(f"{layer}-{block}")
            pairs += [(norm.gamma, arrays[f"{prefix}/{kind}/LayerNorm/gamma"]),
                      (norm.beta, arrays[f"{prefix}/{kind}/LayerNorm/beta"])]
    for variable, value in pairs:
        if tuple(variable.shape) != value.shape:
            raise UserError(f"{variable.path}: shape {list(variable.shape)} does not fit the "
                            f"checkpoint's {list(value.shape)}; build the model from the "
                            "checkpoint's xlnet_config.json")
    return pairs


def load_model_weights_from_checkpoint(model, config, checkpoint_path, in_train_phase):
    """Assigns an original checkpoint's weights to a build_xlnet model (all or nothing)."""
    if not isinstance(config, XLNetConfig):
        config = XLNetConfig.from_dict(config, section="xlnet_config")
    _assign(model, read_original_checkpoint(checkpoint_path, config), config, in_train_phase,
            checkpoint_path)


def _assign(model, arrays, config, in_train_phase, source):
    try:
        pairs = _weight_assignments(model, arrays, config, in_train_phase)
    except ValueError as e:  # get_layer: no such layer
        raise UserError(f"{source}: the model does not match the checkpoint "
                        f"({str(e).splitlines()[0]}); build it from the same config") from None
    for variable, value in pairs:
        variable.assign(value)


def load_trained_model_from_checkpoint(config_path, checkpoint_path, batch_size=None,
                                       memory_len=0, target_len=128, in_train_phase=True,
                                       attention_type=ATTENTION_TYPE_BI, dropout=0.0,
                                       attention_dropout=0.0, clamp_len=None,
                                       mask_index=PAD_ID):
    """keras-xlnet's loader: an original release (`xlnet_config.json` + checkpoint prefix such
    as `.../xlnet_model.ckpt`) as a build_xlnet model. The checkpoint is checked against the
    config before the model is built."""
    config = XLNetConfig.from_json(config_path)
    arrays = read_original_checkpoint(checkpoint_path, config)
    model = build_xlnet(
        units=config.d_model, training=in_train_phase, num_token=config.n_token,
        num_block=config.n_layer, num_head=config.n_head, hidden_dim=config.d_inner,
        batch_size=batch_size, memory_len=memory_len, target_len=target_len,
        mask_index=mask_index, dropout=dropout, attention_dropout=attention_dropout,
        attention_type=attention_type, feed_forward_activation=config.ff_activation,
        clamp_len=clamp_len, shared_biases=not config.untie_r, head_dim=config.d_head)
    _assign(model, arrays, config, in_train_phase, checkpoint_path)
    return model
