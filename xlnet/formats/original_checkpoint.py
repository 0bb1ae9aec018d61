"""The original release's TF1 checkpoint: its variable names and shapes (original-xlnet.md §7.1),
and reading and writing such a checkpoint as a plain `{name: numpy array}` dict.

Everything else (the Keras model, keras-xlnet's layers, the HuggingFace export) converts to and
from that dict, so the names are spelled in exactly one place. A checkpoint is checked against
the config as a whole before anything is returned, so no weight is ever assigned from a
checkpoint that does not fit.
"""

import logging
import os
import re
import shutil
import tempfile

import numpy as np

from xlnet.errors import UserError

logger = logging.getLogger(__name__)

PREFIX = "model/transformer"
LM_BIAS = "model/lm_loss/bias"
SHARED_BIASES = ("r_w_bias", "r_r_bias", "r_s_bias")
ATTENTION_KERNELS = ("q", "k", "v", "r", "o")
# The released checkpoint's file names (the original scripts' --init_checkpoint points here).
CHECKPOINT_NAME = "xlnet_model.ckpt"
CONFIG_NAME = "xlnet_config.json"

# Training-state variables an original checkpoint may carry besides the weights (original-xlnet.md
# §7.1): the step counter and optimizer slots. They are not weights, so reading skips them.
_TRAINING_STATE = re.compile(r"(^global_step$|^beta[12]_power$|/(Adam|Adam_1|adam_m|adam_v)$)")
# Fine-tuning heads of the original code (the "sequnece" typo is the original's).
_FINE_TUNING_HEAD = re.compile(r"^model/(sequnece_summary|regression_[^/]+)/")


def layer_prefix(layer):
    return f"{PREFIX}/layer_{layer}"


def original_shapes(config):
    """{original variable name: shape} for an XLNetConfig, in the original's order."""
    d, n, dh, di = config.d_model, config.n_head, config.d_head, config.d_inner
    bias_shape = (config.n_layer, n, dh) if config.untie_r else (n, dh)
    shapes = {
        f"{PREFIX}/word_embedding/lookup_table": (config.n_token, d),
        f"{PREFIX}/mask_emb/mask_emb": (1, 1, d),
        f"{PREFIX}/r_w_bias": bias_shape,
        f"{PREFIX}/r_r_bias": bias_shape,
        f"{PREFIX}/r_s_bias": bias_shape,
        f"{PREFIX}/seg_embed": (config.n_layer, 2, n, dh),
    }
    for layer in range(config.n_layer):
        prefix = layer_prefix(layer)
        for kernel in ATTENTION_KERNELS:
            shapes[f"{prefix}/rel_attn/{kernel}/kernel"] = (d, n, dh)
        shapes[f"{prefix}/rel_attn/LayerNorm/gamma"] = (d,)
        shapes[f"{prefix}/rel_attn/LayerNorm/beta"] = (d,)
        shapes[f"{prefix}/ff/layer_1/kernel"] = (d, di)
        shapes[f"{prefix}/ff/layer_1/bias"] = (di,)
        shapes[f"{prefix}/ff/layer_2/kernel"] = (di, d)
        shapes[f"{prefix}/ff/layer_2/bias"] = (d,)
        shapes[f"{prefix}/ff/LayerNorm/gamma"] = (d,)
        shapes[f"{prefix}/ff/LayerNorm/beta"] = (d,)
    shapes[LM_BIAS] = (config.n_token,)
    return shapes


def layer_biases(arrays, config, layer):
    """(r_w_bias, r_r_bias, r_s_bias) of one layer, each [n_head, d_head], tied or untied."""
    return tuple(arrays[f"{PREFIX}/{name}"][layer] if config.untie_r
                 else arrays[f"{PREFIX}/{name}"] for name in SHARED_BIASES)


def _mismatch_hint(found, expected, config):
    """A sentence saying which config field the checkpoint disagrees with, when it is clear."""
    bias = f"{PREFIX}/r_w_bias"
    if bias in found and len(found[bias]) != len(expected[bias]):
        tied = len(found[bias]) == 2
        return (f"the checkpoint's attention biases are {'tied' if tied else 'per layer'}: "
                f"set untie_r: {'false' if tied else 'true'}")
    layers = {int(m.group(1)) for name in found
              for m in [re.match(rf"{PREFIX}/layer_(\d+)/", name)] if m}
    if layers and max(layers) + 1 != config.n_layer:
        return f"the checkpoint has {max(layers) + 1} layers: set n_layer: {max(layers) + 1}"
    embedding = f"{PREFIX}/word_embedding/lookup_table"
    if embedding in found and len(found[embedding]) == 2:
        n_token, d_model = found[embedding]
        if n_token != config.n_token:
            return f"the checkpoint's vocabulary has {n_token} tokens: set n_token: {n_token}"
        if d_model != config.d_model:
            return f"the checkpoint's d_model is {d_model}: set d_model: {d_model}"
    return "the config does not describe this checkpoint"


def check_shapes(found, config, source):
    """Raises UserError naming the first missing, extra or mis-shaped weight of `found`.

    `found` maps names to shapes; optimizer slots and the step counter are ignored, and so are
    the original fine-tuning heads (logged).
    """
    expected = original_shapes(config)
    weights = {}
    for name, shape in found.items():
        if _TRAINING_STATE.search(name):
            continue
        if name not in expected and _FINE_TUNING_HEAD.match(name):
            logger.warning("%s: skipping fine-tuning head variable %s", source, name)
            continue
        weights[name] = tuple(shape)
    hint = _mismatch_hint(weights, expected, config)
    for name, shape in expected.items():
        if name not in weights:
            raise UserError(f"{source}: variable {name} is missing; {hint}")
        if weights[name] != shape:
            raise UserError(f"{source}: variable {name} has shape {list(weights[name])}, the "
                            f"config needs {list(shape)}; {hint}")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise UserError(f"{source}: unexpected variable {extra[0]}; {hint}")
    return list(expected)


def checkpoint_prefix(path):
    """The checkpoint prefix for `path`: a prefix itself, or a directory holding one."""
    import tensorflow as tf

    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        candidate = os.path.join(path, CHECKPOINT_NAME)
        if tf.io.gfile.exists(candidate + ".index"):
            return candidate
        raise UserError(f"{path}: no TF checkpoint in this directory (expected "
                        f"{CHECKPOINT_NAME}.index or a 'checkpoint' file)")
    if not tf.io.gfile.exists(path + ".index"):
        raise UserError(f"{path}: no such checkpoint ({path}.index does not exist); give the "
                        "prefix, e.g. .../xlnet_model.ckpt")
    return path


def read_original_checkpoint(path, config):
    """{original name: float32 array} of an original-format checkpoint, checked against config."""
    import tensorflow as tf

    prefix = checkpoint_prefix(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as e:  # noqa: BLE001 - a corrupt file raises anything from the C++ layer
        raise UserError(f"{prefix}: not a readable TF checkpoint ({str(e).splitlines()[0]})"
                        ) from None
    names = check_shapes(reader.get_variable_to_shape_map(), config, prefix)
    return {name: np.asarray(reader.get_tensor(name), dtype=np.float32) for name in names}


def write_original_checkpoint(arrays, config, directory):
    """Writes `directory/xlnet_model.ckpt.*` (+ `checkpoint` and `xlnet_config.json`), the
    released layout, with exactly the original variable names; returns the prefix.

    The files are written under a temporary name in `directory` and renamed at the end, so an
    interrupted write never leaves a checkpoint that looks valid.
    """
    import json

    import tensorflow as tf

    names = check_shapes({k: np.shape(v) for k, v in arrays.items()}, config, "weights")
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".writing-", dir=directory)
    try:
        staged = os.path.join(staging, CHECKPOINT_NAME)
        tf.raw_ops.SaveV2(
            prefix=staged, tensor_names=names, shape_and_slices=[""] * len(names),
            tensors=[tf.constant(np.asarray(arrays[n], dtype=np.float32)) for n in names])
        with open(os.path.join(staging, CONFIG_NAME), "w") as f:
            json.dump(config.to_original_json(), f, indent=2)
            f.write("\n")
        with open(os.path.join(staging, "checkpoint"), "w") as f:
            f.write(f'model_checkpoint_path: "{CHECKPOINT_NAME}"\n'
                    f'all_model_checkpoint_paths: "{CHECKPOINT_NAME}"\n')
        # The `checkpoint` state file goes last: it is what makes the directory look complete.
        for name in sorted(os.listdir(staging), key=lambda n: n == "checkpoint"):
            os.replace(os.path.join(staging, name), os.path.join(directory, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    prefix = os.path.join(directory, CHECKPOINT_NAME)
    logger.debug("wrote %d original variables to %s", len(names), prefix)
    return prefix


def model_arrays(model):
    """{original name: array} of an XLNetLM's weights."""
    return {name: variable.numpy() for name, variable in model.original_variables().items()}


def assign_to_model(model, arrays, config, source="weights"):
    """Assigns a checked {original name: array} dict to an XLNetLM (all or nothing)."""
    names = check_shapes({k: np.shape(v) for k, v in arrays.items()}, config, source)
    variables = model.original_variables()
    for name in names:
        variables[name].assign(arrays[name])
