import numpy as np
import pytest
import tensorflow as tf

from pretrain.learning_rate_schedule import WarmupDecaySchedule
from pretrain.optimizer import AdamWeightDecay, decays
from xlnet import load_run_config
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
