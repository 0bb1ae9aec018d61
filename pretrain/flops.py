"""Model FLOPs per trained token: original-xlnet.md §10.2's "optimised two-stream" count for a
config.

2 FLOPs per multiply-add; every matmul of the content stream (all L rows) and the query stream
(the K target rows only); position scores over the `M + 2L` rows of the positional encoding, as
rel_shift needs; the tied softmax on the K targets. Not counted: LayerNorm, softmax, masks,
gathers, the once-per-batch position projection. Training = 3 × forward, per real token.
"""


def forward_flops_per_sequence(model, data):
    """Forward FLOPs for one segment of `data.seq_len` tokens with `model.mem_len` memory."""
    seq_len, targets = data.seq_len, data.num_predict
    key_len = model.mem_len + seq_len
    position_len = key_len + seq_len
    heads = model.n_head * model.d_head
    d, inner = model.d_model, model.d_inner

    def stream(rows, with_key_value):
        projections = 2 * 2 * rows * d * heads  # q and o
        if with_key_value:
            projections += 2 * 2 * key_len * d * heads  # k and v over memory + segment
        attention = 2 * 2 * rows * key_len * heads + 2 * rows * position_len * heads
        feed_forward = 2 * 2 * rows * d * inner
        return projections + attention + feed_forward

    per_layer = stream(seq_len, True) + stream(targets, False)
    softmax = 2 * targets * d * model.n_token
    return model.n_layer * per_layer + softmax


def train_flops_per_token(model, data):
    return 3 * forward_flops_per_sequence(model, data) / data.seq_len
