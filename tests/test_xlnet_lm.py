"""XLNetLM as a whole: sizes and names, initialisation, masks, memory, dropout, precision, loss."""

import numpy as np
import pytest
import tensorflow as tf

from xlnet.config.model_config import XLNetConfig
from xlnet.model.lm_loss import masked_lm_loss, per_example_lm_loss
from xlnet.model.permutation import permutation_inputs
from xlnet.config.run_config import load_run_config
from xlnet.model.xlnet_lm import XLNetLM

BATCH, SEQ_LEN, NUM_TARGETS = 4, 8, 3


def tiny_config(**changes):
    base = dict(n_layer=2, d_model=32, n_head=4, d_head=8, d_inner=64, n_token=100,
                mem_len=6, reuse_len=4, dropout=0.0, dropatt=0.0)
    return XLNetConfig(**{**base, **changes})


def sized(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


def batch_inputs(config, seed=0, mems=True):
    """A batch with permutation masks built the way the trainer builds them (original-xlnet.md
    §5.2)."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(9, config.n_token, (BATCH, SEQ_LEN)).astype(np.int32)
    is_masked = np.zeros((BATCH, SEQ_LEN), np.int32)
    for b in range(BATCH):
        is_masked[b, rng.choice(SEQ_LEN, NUM_TARGETS, replace=False)] = 1
    ranks = np.stack([rng.permutation(SEQ_LEN) for _ in range(BATCH)]).astype(np.int32)
    perm = permutation_inputs(input_ids, is_masked, ranks, reuse_len=0, num_predict=NUM_TARGETS)
    inputs = {"input_ids": input_ids,
              "segment_ids": rng.integers(0, 2, (BATCH, SEQ_LEN)).astype(np.int32),
              "perm_mask": perm["perm_mask"], "target_mapping": perm["target_mapping"]}
    if mems:
        inputs["mems"] = rng.normal(
            size=(BATCH, config.n_layer, config.mem_len, config.d_model)).astype(np.float32)
    return inputs, perm


def test_tiny_parameter_count_and_names():
    config = load_run_config("tiny").model
    model = XLNetLM(config)
    assert sized(model.trainable_variables) == config.num_parameters
    original = model.original_variables()
    assert sized(original.values()) == config.num_parameters
    assert len({id(v) for v in original.values()}) == len(model.trainable_variables)


@pytest.mark.slow
@pytest.mark.parametrize("name,params", [("base", 116_750_336), ("large", 360_300_800)])
def test_released_shapes(name, params):
    config = load_run_config(name).model
    model = XLNetLM(config)
    assert sized(model.trainable_variables) == params
    shapes = {k: tuple(v.shape) for k, v in model.original_variables().items()}
    d, n, dh, layers = config.d_model, config.n_head, config.d_head, config.n_layer
    assert shapes["model/transformer/word_embedding/lookup_table"] == (32000, d)
    assert shapes["model/transformer/mask_emb/mask_emb"] == (1, 1, d)
    assert shapes["model/transformer/r_w_bias"] == (layers, n, dh)
    assert shapes["model/transformer/seg_embed"] == (layers, 2, n, dh)
    assert shapes[f"model/transformer/layer_{layers - 1}/rel_attn/o/kernel"] == (d, n, dh)
    assert shapes["model/transformer/layer_0/ff/layer_1/kernel"] == (d, config.d_inner)
    assert shapes["model/transformer/layer_0/ff/LayerNorm/beta"] == (d,)
    assert shapes["model/lm_loss/bias"] == (32000,)
    assert len(shapes) == 6 + 13 * layers + 1  # per layer: 5 kernels, 4 ff, 2 LayerNorms


def test_tied_biases_when_not_untie_r():
    config = tiny_config(untie_r=False)
    model = XLNetLM(config)
    assert tuple(model.original_variables()["model/transformer/r_r_bias"].shape) == (4, 8)
    assert sized(model.trainable_variables) == config.num_parameters


def test_initialisation_follows_the_original():
    config = tiny_config(d_model=256, n_head=4, d_head=64, n_token=2000)
    original = {k: v.numpy() for k, v in XLNetLM(config).original_variables().items()}
    assert abs(original["model/transformer/word_embedding/lookup_table"].std() - 0.02) < 1e-3
    assert abs(original["model/transformer/layer_0/rel_attn/q/kernel"].std() - 0.02) < 1e-3
    limit = np.sqrt(6.0 / (1 + 256))  # glorot-uniform of [1, 1, d] (QUIRK Q20)
    mask_emb = original["model/transformer/mask_emb/mask_emb"]
    assert np.abs(mask_emb).max() <= limit and np.abs(mask_emb).max() > 0.8 * limit
    assert not original["model/lm_loss/bias"].any()
    assert not original["model/transformer/layer_1/ff/layer_2/bias"].any()
    np.testing.assert_array_equal(original["model/transformer/layer_0/ff/LayerNorm/gamma"], 1)


def test_a_target_never_sees_its_own_token():
    config = tiny_config(n_layer=3)
    model = XLNetLM(config)
    inputs, perm = batch_inputs(config)
    logits = model(inputs)["logits"].numpy()
    positions = np.argmax(perm["target_mapping"].numpy(), -1)  # [B, K]
    for k in range(NUM_TARGETS):
        changed = dict(inputs, input_ids=inputs["input_ids"].copy())
        changed["input_ids"][np.arange(BATCH), positions[:, k]] += 1
        changed_logits = model(changed)["logits"].numpy()
        np.testing.assert_allclose(changed_logits[:, k], logits[:, k], atol=1e-6)
        # other targets may see it, so the comparison above can fail
        assert not np.allclose(changed_logits, logits, atol=1e-6)


def test_content_stream_sees_its_own_position():
    config = tiny_config()
    model = XLNetLM(config)
    inputs, _ = batch_inputs(config)
    features = model(inputs)["features"].numpy()
    changed = dict(inputs, input_ids=inputs["input_ids"].copy())
    changed["input_ids"][:, 0] += 1
    assert not np.allclose(model(changed)["features"].numpy()[:, 0], features[:, 0])


@pytest.mark.parametrize("attn_type", ["bi", "uni"])
def test_memory_length_equals_a_shorter_memory(attn_type):
    config = tiny_config(attn_type=attn_type)
    model = XLNetLM(config)
    inputs, _ = batch_inputs(config)
    visible = 2
    masked = model(dict(inputs, memory_length=np.full([BATCH], visible, np.int32)))
    shorter = model(dict(inputs, mems=inputs["mems"][:, :, -visible:]))
    full = model(inputs)
    for key in ("features", "logits"):
        np.testing.assert_allclose(masked[key].numpy(), shorter[key].numpy(), atol=2e-5)
        assert not np.allclose(masked[key].numpy(), full[key].numpy(), atol=1e-3)


def test_fully_hidden_memory_equals_no_memory():
    config = tiny_config()
    model = XLNetLM(config)
    inputs, _ = batch_inputs(config)
    hidden = model(dict(inputs, memory_length=np.zeros([BATCH], np.int32)))
    none = model(dict(inputs, mems=None))
    for key in ("features", "logits"):
        np.testing.assert_allclose(hidden[key].numpy(), none[key].numpy(), atol=2e-5)


def test_zero_memory_is_attended_unlike_no_memory():
    config = tiny_config()
    model = XLNetLM(config)
    inputs, _ = batch_inputs(config)
    zeros = model(dict(inputs, mems=np.zeros_like(inputs["mems"])))["logits"].numpy()
    none = model(dict(inputs, mems=None))["logits"].numpy()
    assert not np.allclose(zeros, none, atol=1e-3)


def test_new_memory_caches_each_layers_input_reuse_part_without_gradient():
    config = tiny_config(mem_len=6, reuse_len=4)
    model = XLNetLM(config)
    inputs, _ = batch_inputs(config)
    with tf.GradientTape() as tape:
        new_mems = model(inputs)["new_mems"]  # [B, N, M, d]
        total = tf.reduce_sum(new_mems)
    assert tape.gradient(total, model.trainable_variables[0]) is None
    assert new_mems.shape == (BATCH, config.n_layer, 6, config.d_model)
    embeddings = model.original_variables()["model/transformer/word_embedding/lookup_table"]
    np.testing.assert_allclose(new_mems[:, 0, :2], inputs["mems"][:, 0, -2:])
    np.testing.assert_allclose(new_mems[:, 0, 2:],
                               tf.gather(embeddings, inputs["input_ids"][:, :4]))
    np.testing.assert_allclose(new_mems[:, 1, :2], inputs["mems"][:, 1, -2:])
    assert not np.allclose(new_mems[:, 1, 2:], new_mems[:, 0, 2:])


def test_dropout_is_a_function_of_the_seed():
    config = tiny_config(dropout=0.1, dropatt=0.1)
    model = XLNetLM(config)
    inputs, _ = batch_inputs(config)

    def logits(seed, training=True):
        return model(inputs, training=training, dropout_seed=seed)["logits"].numpy()

    first = logits(tf.constant([3, 4]))
    np.testing.assert_array_equal(logits(tf.constant([3, 4])), first)
    assert not np.allclose(logits(tf.constant([3, 5])), first)
    np.testing.assert_array_equal(logits(tf.constant([3, 4]), training=False),
                                  logits(tf.constant([9, 9]), training=False))


def test_bi_data_needs_an_even_batch():
    config = tiny_config(bi_data=True)
    inputs, _ = batch_inputs(config)
    odd = {k: v[:3] for k, v in inputs.items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match="even batch"):
        XLNetLM(config)(odd)


def test_without_target_mapping_there_are_no_logits():
    config = tiny_config()
    inputs, _ = batch_inputs(config)
    outputs = XLNetLM(config)({"input_ids": inputs["input_ids"],
                               "segment_ids": inputs["segment_ids"]})
    assert set(outputs) == {"features", "new_mems"}
    assert "new_mems" not in XLNetLM(tiny_config(mem_len=0))(
        {"input_ids": inputs["input_ids"]})


def test_mixed_bfloat16_keeps_float32_variables_and_outputs():
    config = tiny_config()
    reference = XLNetLM(config)
    mixed = XLNetLM(config, dtype="mixed_bfloat16")
    for name, variable in mixed.original_variables().items():
        assert variable.dtype == "float32"
        variable.assign(reference.original_variables()[name])
    inputs, _ = batch_inputs(config)
    expected, got = reference(inputs), mixed(inputs)
    assert got["logits"].dtype == tf.float32 and got["new_mems"].dtype == tf.float32
    assert got["features"].dtype == tf.bfloat16
    np.testing.assert_allclose(got["logits"].numpy(), expected["logits"].numpy(), atol=0.05)
    np.testing.assert_allclose(tf.cast(got["features"], tf.float32), expected["features"],
                               atol=0.1)


def test_masked_lm_loss_is_the_masked_mean_of_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 5)).astype(np.float32)
    targets = np.array([[1, 4, 0], [2, 2, 3]], np.int32)
    weights = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    cross_entropy = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    expected = (cross_entropy * weights).sum() / weights.sum()
    np.testing.assert_allclose(masked_lm_loss(logits, targets, weights), expected, rtol=1e-6)
    sums, counts = per_example_lm_loss(logits, targets, weights)
    np.testing.assert_allclose(sums, (cross_entropy * weights).sum(1), rtol=1e-6)
    np.testing.assert_array_equal(counts, [2, 3])
    assert masked_lm_loss(logits, targets, np.zeros_like(weights)).numpy() == 0.0


def test_config_round_trip():
    config = tiny_config(bi_data=True)
    model = XLNetLM(config)
    rebuilt = XLNetLM.from_config(model.get_config())
    assert rebuilt.config == config
    assert sized(rebuilt.trainable_variables) == config.num_parameters


def test_memory_share_is_the_attention_mass_on_the_memory_slots():
    config = tiny_config()
    model = XLNetLM(config)
    inputs, _ = batch_inputs(config)
    plain = model(inputs)
    measured = model(inputs, memory_share=True)
    share = measured["memory_share"].numpy()  # [N]
    assert share.shape == (config.n_layer,) and ((share > 0) & (share < 1)).all()
    np.testing.assert_array_equal(measured["logits"].numpy(), plain["logits"].numpy())
    # Memory hidden by memory_length takes no probability; no memory, no share reported.
    hidden = model({**inputs, "memory_length": np.zeros(BATCH, np.int32)}, memory_share=True)
    np.testing.assert_allclose(hidden["memory_share"].numpy(), 0.0, atol=1e-6)
    without = {k: v for k, v in inputs.items() if k != "mems"}
    assert "memory_share" not in model(without, memory_share=True)
