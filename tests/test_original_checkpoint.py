import os

import numpy as np
import pytest
import tensorflow as tf

from checkpoint_fixture import TINY, random_arrays
from xlnet import UserError, XLNetConfig
from xlnet.formats.original_checkpoint import (CHECKPOINT_NAME, CONFIG_NAME, original_shapes,
                                       read_original_checkpoint, write_original_checkpoint)


def test_released_names_and_shapes():
    base = XLNetConfig()
    shapes = original_shapes(base)
    assert shapes["model/transformer/r_w_bias"] == (12, 12, 64)
    assert shapes["model/transformer/seg_embed"] == (12, 2, 12, 64)
    assert shapes["model/transformer/layer_11/rel_attn/o/kernel"] == (768, 12, 64)
    assert shapes["model/transformer/layer_0/ff/layer_2/kernel"] == (3072, 768)
    assert shapes["model/lm_loss/bias"] == (32000,)
    assert sum(int(np.prod(s)) for s in shapes.values()) == base.num_parameters
    tied = original_shapes(base.replace(untie_r=False))
    assert tied["model/transformer/r_s_bias"] == (12, 64)
    assert sum(int(np.prod(s)) for s in tied.values()) == base.replace(
        untie_r=False).num_parameters


@pytest.mark.parametrize("untie_r", [True, False])
def test_write_then_read_is_bit_identical(tmp_path, untie_r):
    config = TINY.replace(untie_r=untie_r)
    arrays = random_arrays(config)
    prefix = write_original_checkpoint(arrays, config, str(tmp_path))
    assert prefix == str(tmp_path / CHECKPOINT_NAME)
    assert sorted(os.listdir(tmp_path)) == sorted([
        "checkpoint", CONFIG_NAME, CHECKPOINT_NAME + ".index",
        CHECKPOINT_NAME + ".data-00000-of-00001"])
    assert XLNetConfig.from_json(tmp_path / CONFIG_NAME).to_original_json() == \
        config.to_original_json()
    for path in (prefix, str(tmp_path)):
        back = read_original_checkpoint(path, config)
        assert list(back) == list(arrays)
        for name, value in arrays.items():
            assert back[name].tobytes() == value.tobytes(), name


def test_names_are_exactly_the_original_ones(tmp_path):
    """What keras-xlnet's loader and HF's converter do: list the variables, load each by name."""
    arrays = random_arrays(TINY)
    prefix = write_original_checkpoint(arrays, TINY, str(tmp_path))
    listed = dict(tf.train.list_variables(prefix))
    assert listed == {name: list(shape) for name, shape in original_shapes(TINY).items()}
    for name, value in arrays.items():
        np.testing.assert_array_equal(tf.train.load_variable(prefix, name), value)


def test_original_tf1_code_restores_our_checkpoint(tmp_path):
    """What the original scripts do with --init_checkpoint: tf.compat.v1 variables under the
    original scopes, `init_from_checkpoint` by exact name."""
    arrays = random_arrays(TINY)
    prefix = write_original_checkpoint(arrays, TINY, str(tmp_path))
    graph = tf.Graph()
    with graph.as_default():
        variables = {name: tf.compat.v1.get_variable(name, shape=shape, dtype=tf.float32)
                     for name, shape in original_shapes(TINY).items()}
        tf.compat.v1.train.init_from_checkpoint(prefix, {"model/": "model/"})
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            restored = session.run(variables)
    for name, value in arrays.items():
        np.testing.assert_array_equal(restored[name], value, err_msg=name)


def test_reads_a_tf1_saver_checkpoint_with_training_state(tmp_path):
    """A checkpoint as the original trainer writes it: weights, Adam slots and global_step."""
    arrays = random_arrays(TINY, seed=1)
    graph = tf.Graph()
    with graph.as_default():
        for name, value in arrays.items():
            tf.compat.v1.get_variable(name, initializer=value)
            tf.compat.v1.get_variable(name + "/adam_m", initializer=np.zeros_like(value))
        tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(session, str(tmp_path / "model.ckpt"), global_step=7)
    back = read_original_checkpoint(str(tmp_path), TINY)
    assert prefix.endswith("model.ckpt-7") and sorted(back) == sorted(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)


@pytest.mark.parametrize("change,message", [
    (lambda a: a.pop("model/transformer/layer_1/ff/layer_2/bias"),
     "variable model/transformer/layer_1/ff/layer_2/bias is missing"),
    (lambda a: a.update({"model/transformer/layer_0/rel_attn/q/bias": np.zeros(32, np.float32)}),
     "unexpected variable model/transformer/layer_0/rel_attn/q/bias"),
    (lambda a: a.update({"model/lm_loss/bias": np.zeros(99, np.float32)}),
     r"model/lm_loss/bias has shape \[99\], the config needs \[100\]"),
])
def test_missing_extra_or_misshaped_variable_is_named(tmp_path, change, message):
    arrays = random_arrays(TINY)
    change(arrays)
    with pytest.raises(UserError, match=message):
        write_original_checkpoint(arrays, TINY, str(tmp_path))
    assert os.listdir(tmp_path) == []  # nothing half-written


@pytest.mark.parametrize("config_change,hint", [
    (dict(untie_r=False), "biases are per layer: set untie_r: true"),
    (dict(n_layer=3), "the checkpoint has 2 layers: set n_layer: 2"),
    (dict(n_layer=1), "the checkpoint has 2 layers: set n_layer: 2"),
    (dict(n_token=120), "vocabulary has 100 tokens: set n_token: 100"),
])
def test_config_mismatch_says_which_field(tmp_path, config_change, hint):
    write_original_checkpoint(random_arrays(TINY), TINY, str(tmp_path))
    with pytest.raises(UserError, match=hint):
        read_original_checkpoint(str(tmp_path), TINY.replace(**config_change))


def test_tied_checkpoint_against_untied_config(tmp_path):
    tied = TINY.replace(untie_r=False)
    write_original_checkpoint(random_arrays(tied), tied, str(tmp_path))
    with pytest.raises(UserError, match="biases are tied: set untie_r: false"):
        read_original_checkpoint(str(tmp_path), TINY)


def test_unreadable_paths(tmp_path):
    with pytest.raises(UserError, match="no TF checkpoint in this directory"):
        read_original_checkpoint(str(tmp_path), TINY)
    with pytest.raises(UserError, match="does not exist"):
        read_original_checkpoint(str(tmp_path / "xlnet_model.ckpt"), TINY)
    (tmp_path / "bad.ckpt.index").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable TF checkpoint"):
        read_original_checkpoint(str(tmp_path / "bad.ckpt"), TINY)
