"""HuggingFace transformers export: `config.json` + `model.safetensors` for XLNetLMHeadModel.

Built from the same `{original name: array}` dict as the original-format export (original-xlnet.md
§7.2): attention kernels keep their [d, n, dh] shape, FFN kernels are transposed into `nn.Linear`
weights, LayerNorm gamma/beta become weight/bias, the per-layer biases are split out of the
stacked [n_layer, ...] variables (a tied checkpoint gives every layer the same copy, which HF
then computes identically), and the LM weight stays tied to the word embedding.
"""

import json
import logging
import os
import shutil
import tempfile

import numpy as np

from xlnet.atomic_file import umask_mode
from xlnet.errors import UserError
from xlnet.formats.original_checkpoint import (ATTENTION_KERNELS, LM_BIAS, PREFIX, check_shapes,
                                       layer_biases, layer_prefix)
from xlnet.schema import BOS_ID, EOS_ID, PAD_ID

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# HF's "gelu" is the exact erf form; "gelu_new" is the tanh approximation the original uses.
HF_ACTIVATION = {"gelu": "gelu_new", "relu": "relu"}


def hf_config(config):
    """The config.json mapping for transformers' XLNetConfig."""
    if config.d_head * config.n_head != config.d_model:
        raise UserError(
            f"model.d_head: HuggingFace XLNet needs d_head * n_head == d_model, got "
            f"{config.d_head} * {config.n_head} != {config.d_model}; export --format original-tf "
            "instead")
    return {
        "architectures": ["XLNetLMHeadModel"],
        "model_type": "xlnet",
        "vocab_size": config.n_token,
        "d_model": config.d_model,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "d_head": config.d_head,
        "d_inner": config.d_inner,
        "ff_activation": HF_ACTIVATION[config.ff_activation],
        "attn_type": config.attn_type,
        "layer_norm_eps": 1e-12,
        "dropout": config.dropout,
        "mem_len": config.mem_len,
        "reuse_len": config.reuse_len,
        "use_mems_eval": True,
        "use_mems_train": config.mem_len > 0,
        # bi_data describes the training data; the exported model reads text forward.
        "bi_data": False,
        "clamp_len": config.clamp_len,
        "pad_token_id": PAD_ID,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "tie_word_embeddings": True,
        "dtype": "float32",
    }


def hf_state_dict(arrays, config):
    """{HF parameter name: float32 array} from a checked {original name: array} dict."""
    check_shapes({k: np.shape(v) for k, v in arrays.items()}, config, "weights")
    tensors = {
        "transformer.word_embedding.weight": arrays[f"{PREFIX}/word_embedding/lookup_table"],
        "transformer.mask_emb": arrays[f"{PREFIX}/mask_emb/mask_emb"],
        "lm_loss.bias": arrays[LM_BIAS],
    }
    for layer in range(config.n_layer):
        source, target = layer_prefix(layer), f"transformer.layer.{layer}"
        for kernel in ATTENTION_KERNELS:
            tensors[f"{target}.rel_attn.{kernel}"] = arrays[f"{source}/rel_attn/{kernel}/kernel"]
        r_w_bias, r_r_bias, r_s_bias = layer_biases(arrays, config, layer)
        tensors[f"{target}.rel_attn.r_w_bias"] = r_w_bias
        tensors[f"{target}.rel_attn.r_r_bias"] = r_r_bias
        tensors[f"{target}.rel_attn.r_s_bias"] = r_s_bias
        tensors[f"{target}.rel_attn.seg_embed"] = arrays[f"{PREFIX}/seg_embed"][layer]
        for block, hf_block in (("rel_attn", "rel_attn"), ("ff", "ff")):
            tensors[f"{target}.{hf_block}.layer_norm.weight"] = arrays[
                f"{source}/{block}/LayerNorm/gamma"]
            tensors[f"{target}.{hf_block}.layer_norm.bias"] = arrays[
                f"{source}/{block}/LayerNorm/beta"]
        for dense in ("layer_1", "layer_2"):
            tensors[f"{target}.ff.{dense}.weight"] = np.transpose(
                arrays[f"{source}/ff/{dense}/kernel"])
            tensors[f"{target}.ff.{dense}.bias"] = arrays[f"{source}/ff/{dense}/bias"]
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in tensors.items()}


def write_hf(arrays, config, directory):
    """Writes config.json and model.safetensors into `directory` (each renamed into place)."""
    from safetensors.numpy import save_file

    config_json = hf_config(config)
    tensors = hf_state_dict(arrays, config)
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".writing-", dir=directory)
    try:
        save_file(tensors, os.path.join(staging, WEIGHTS_FILE), metadata={"format": "pt"})
        # safetensors creates it 0600; give it what open() would have, under the umask.
        os.chmod(os.path.join(staging, WEIGHTS_FILE), umask_mode(0o666))
        with open(os.path.join(staging, CONFIG_FILE), "w") as f:
            json.dump(config_json, f, indent=2)
            f.write("\n")
        # config.json last: it is what marks the directory as a model to transformers.
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            os.replace(os.path.join(staging, name), os.path.join(directory, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.debug("wrote %d HuggingFace tensors to %s", len(tensors), directory)
    return directory
