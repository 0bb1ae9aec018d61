"""Stateless dropout: the mask is a pure function of (seed, site), never of hidden RNG state.

Every place the model drops units is a numbered *site*. The caller hands one int32 [2] seed per
step (and per replica); each site folds its own number into it, so two sites never share a
mask, the same seed reproduces the same masks (exact resume), and replicas given different seeds
get different masks. Philox is named explicitly because `auto_select` picks a different
algorithm under XLA than in graph mode.

Each kept/dropped decision uses 16 random bits (two per Philox uint32): random generation is the
dominant cost of dropout on CPU, and this halves it. The drop probability is therefore the rate
rounded to a multiple of 1/65536 (0.1 -> 0.100006).
"""

import tensorflow as tf

RNG_ALGORITHM = "philox"

# Site numbering: the model-wide sites below, then a block of SITES_PER_LAYER per layer
# (attention sites first, feed-forward sites from FEED_FORWARD_SITE_OFFSET).
WORD_EMBEDDING_SITE = 0
MASK_EMBEDDING_SITE = 1
POSITIONAL_ENCODING_SITE = 2
FINAL_QUERY_STREAM_SITE = 3
FIRST_LAYER_SITE = 16
SITES_PER_LAYER = 16
FEED_FORWARD_SITE_OFFSET = 8


def layer_site(layer_index):
    """First dropout site of layer `layer_index`."""
    return FIRST_LAYER_SITE + SITES_PER_LAYER * layer_index


def site_seed(seed, site):
    """The int32 [2] seed of one dropout site."""
    return tf.random.experimental.stateless_fold_in(
        tf.cast(seed, tf.int32), site, alg=RNG_ALGORITHM)


def stateless_dropout(inputs, rate, seed, site, training):
    """Inverted dropout of `inputs` at `site`; the identity unless training with rate > 0."""
    if not training or rate == 0.0:
        return inputs
    if seed is None:
        raise ValueError("stateless_dropout: training with dropout needs a seed (int32 [2])")
    keep = random_uint16(tf.shape(inputs), site_seed(seed, site)) >= drop_threshold(rate)
    scaled = inputs * tf.cast(1.0 / (1.0 - rate), inputs.dtype)
    return tf.where(keep, scaled, tf.zeros_like(inputs))


def drop_threshold(rate):
    """16-bit values below this are dropped: P(drop) = round(rate * 2**16) / 2**16."""
    return tf.constant(round(rate * 65536), tf.uint16)


def random_uint16(shape, seed):
    """Uniform uint16 values of `shape`, two from each Philox uint32."""
    count = tf.reduce_prod(shape)
    words = tf.random.stateless_uniform([(count + 1) // 2], seed, dtype=tf.uint32, minval=None,
                                        maxval=None, alg=RNG_ALGORITHM)  # [ceil(n/2)]
    halves = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:count]  # [n]
    return tf.reshape(halves, shape)
