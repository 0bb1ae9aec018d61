import numpy as np
import pytest
import tensorflow as tf

from pretrain.learning_rate_schedule import WarmupDecaySchedule
from pretrain.optimizer import AdamWeightDecay, Lamb, build_optimizer, decays
from xlnet import load_run_config
from xlnet.errors import UserError
from xlnet.model.xlnet_lm import XLNetLM


def test_schedule_matches_the_spec_table():
    schedule = WarmupDecaySchedule(4e-4, 40_000, 500_000, 0.001)
    for step, lr in [(0, 0.0), (20_000, 2e-4), (40_000, 4e-4), (270_000, 2.002e-4),
                     (500_000, 4e-7), (600_000, 4e-7)]:
        assert float(schedule(step)) == pytest.approx(lr, rel=1e-4, abs=1e-12), step


def test_cosine_decay_ends_at_the_floor():
    schedule = WarmupDecaySchedule(1e-3, 10, 110, 0.1, decay="cos")
    assert float(schedule(10)) == pytest.approx(1e-3)
    assert float(schedule(60)) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert float(schedule(110)) == pytest.approx(1e-4)


@pytest.mark.parametrize("name,decayed", [
    ("model/transformer/layer_0/rel_attn/q/kernel", True),
    ("model/transformer/word_embedding/lookup_table", True),
    ("model/transformer/r_w_bias", True), ("model/transformer/r_s_bias", True),
    ("model/transformer/seg_embed", True), ("model/transformer/mask_emb/mask_emb", True),
    ("model/transformer/layer_0/ff/layer_1/bias", False),
    ("model/transformer/layer_0/rel_attn/LayerNorm/gamma", False),
    ("model/lm_loss/bias", False)])
def test_decay_exclusions_follow_the_original(name, decayed):
    assert decays(name) is decayed


def test_every_model_variable_gets_the_original_decay_choice():
    model = XLNetLM(load_run_config("tiny").model)
    optimizer = AdamWeightDecay(1e-3, weight_decay=0.01)
    optimizer.exclude_by_original_names(model.original_variables())
    optimizer.build(model.trainable_variables)
    for name, variable in model.original_variables().items():
        assert optimizer._use_weight_decay(variable) is decays(name), name


def _one_update(bias_correction, weight_decay):
    variable = tf.Variable([1.0, -2.0])
    optimizer = AdamWeightDecay(0.1, weight_decay=weight_decay, epsilon=1e-6,
                                bias_correction=bias_correction)
    optimizer.build([variable])
    optimizer.apply([tf.constant([0.5, 0.25])], [variable])
    return variable.numpy()


def test_update_rules_with_and_without_bias_correction():
    g = np.array([0.5, 0.25])
    m, v = 0.1 * g, 0.001 * g ** 2
    theta = np.array([1.0, -2.0])
    # Q18 (the original AdamWeightDecay): no bias correction, decay added to the update.
    expected = theta - 0.1 * (m / (np.sqrt(v) + 1e-6) + 0.01 * theta)
    np.testing.assert_allclose(_one_update(False, 0.01), expected, rtol=1e-6)
    # Bias-corrected (TF1/Keras Adam form): the first step moves each weight by about lr.
    corrected = theta - 0.1 * np.sqrt(1 - 0.999) / (1 - 0.9) * m / (np.sqrt(v) + 1e-6)
    np.testing.assert_allclose(_one_update(True, 0.0), corrected, rtol=1e-6)


def _lamb_reference(theta, grads, lr, weight_decay, decayed, bias_correction, eps=1e-6,
                    beta_1=0.9, beta_2=0.999):
    """LAMB in numpy, step by step as the paper writes it (Algorithm 2, one "layer")."""
    m = v = np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g ** 2
        m_hat, v_hat = ((m / (1 - beta_1 ** t), v / (1 - beta_2 ** t)) if bias_correction
                        else (m, v))
        update = m_hat / (np.sqrt(v_hat) + eps)
        if decayed:
            update = update + weight_decay * theta
            ratio = np.linalg.norm(theta) / np.linalg.norm(update)
            update = ratio * update
        theta = theta - lr * update
    return theta


@pytest.mark.parametrize("bias_correction", [True, False])
def test_lamb_matches_a_numpy_reference_for_a_few_steps(bias_correction):
    rng = np.random.default_rng(0)
    kernel0 = rng.normal(size=(3, 4)).astype(np.float32)
    bias0 = rng.normal(size=4).astype(np.float32)
    grads = [(rng.normal(size=(3, 4)).astype(np.float32) * scale,
              rng.normal(size=4).astype(np.float32)) for scale in (1.0, 0.1, 3.0, 0.5)]
    kernel, bias = tf.Variable(kernel0), tf.Variable(bias0)
    optimizer = Lamb(0.05, weight_decay=0.01, epsilon=1e-6, bias_correction=bias_correction)
    optimizer.exclude_by_original_names({"model/transformer/layer_0/ff/layer_1/kernel": kernel,
                                         "model/transformer/layer_0/ff/layer_1/bias": bias})
    optimizer.build([kernel, bias])
    for g_kernel, g_bias in grads:
        optimizer.apply([tf.constant(g_kernel), tf.constant(g_bias)], [kernel, bias])
    np.testing.assert_allclose(kernel.numpy(), _lamb_reference(
        kernel0.astype(np.float64), [g for g, _ in grads], 0.05, 0.01, True, bias_correction),
        rtol=1e-5, atol=1e-6)
    # The bias is excluded from decay and from the trust ratio: plain Adam moments.
    np.testing.assert_allclose(bias.numpy(), _lamb_reference(
        bias0.astype(np.float64), [g for _, g in grads], 0.05, 0.01, False, bias_correction),
        rtol=1e-5, atol=1e-6)


def test_lamb_step_length_follows_the_weight_norm():
    """The trust ratio makes each decayed variable's first step lr·‖θ‖ long, whatever the
    gradient's scale: what lets one learning rate serve every layer at large batches."""
    for scale in (1e-3, 1e3):
        theta = np.arange(1.0, 7.0, dtype=np.float32).reshape(2, 3)
        variable = tf.Variable(theta)
        optimizer = Lamb(0.01, weight_decay=0.0)
        optimizer.build([variable])
        optimizer.apply([tf.constant(theta[::-1] * scale)], [variable])
        np.testing.assert_allclose(np.linalg.norm(variable.numpy() - theta),
                                   0.01 * np.linalg.norm(theta), rtol=1e-5)


def test_train_optimizer_selects_lamb():
    train = load_run_config("tiny", ["train.optimizer=lamb"]).train
    model = XLNetLM(load_run_config("tiny").model)
    optimizer = build_optimizer(train, 1e-3, model.original_variables())
    optimizer.build(model.trainable_variables)
    assert isinstance(optimizer, Lamb) and optimizer.lamb_weight_decay == train.weight_decay
    for name, variable in model.original_variables().items():
        assert optimizer._use_weight_decay(variable) is decays(name), name
    with pytest.raises(UserError, match="train.optimizer"):
        load_run_config("tiny", ["train.optimizer=sgd"])


def test_trainer_steps_with_lamb(dataset, tmp_path):
    from pretrain_harness import record_run

    records = record_run(dataset, str(tmp_path / "model"), [
        "train.optimizer=lamb", "train.steps=4", "train.warmup_steps=0",
        "train.checkpoint_every=4"])
    assert records["loss"].shape == (4,) and np.isfinite(records["loss"]).all()
    assert records["loss"][-1] < records["loss"][0]
