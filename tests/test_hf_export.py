"""Our export read by transformers' PyTorch XLNetLMHeadModel: no missing keys, same logits."""

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from checkpoint_fixture import TINY, hf_model, random_arrays
from xlnet import UserError
from xlnet.formats.hf_export import hf_config
from xlnet.formats.original_checkpoint import assign_to_model
from xlnet.model.xlnet_lm import XLNetLM

TOLERANCE = 1e-4


def test_config_asks_hf_for_the_original_numerics():
    config = hf_config(TINY.replace(ff_activation="gelu", mem_len=384, reuse_len=256))
    assert config["ff_activation"] == "gelu_new"  # HF "gelu" is the erf form
    assert (config["mem_len"], config["reuse_len"]) == (384, 256)
    assert config["layer_norm_eps"] == 1e-12 and config["tie_word_embeddings"] is True
    assert hf_config(TINY.replace(ff_activation="relu"))["ff_activation"] == "relu"
    with pytest.raises(UserError, match="d_head \\* n_head == d_model"):
        hf_config(TINY.replace(d_head=16))


@pytest.mark.parametrize("untie_r", [True, False])
def test_hf_logits_and_features_match_ours(tmp_path, untie_r):
    config = TINY.replace(untie_r=untie_r)
    arrays = random_arrays(config, seed=5)
    ours = XLNetLM(config)
    assign_to_model(ours, arrays, config)
    hf = hf_model(arrays, config, tmp_path)
    written = load_file(str(tmp_path / "model.safetensors"))
    np.testing.assert_array_equal(  # nn.Linear stores [out, in]: the FFN kernels transposed
        written["transformer.layer.1.ff.layer_1.weight"],
        arrays["model/transformer/layer_1/ff/layer_1/kernel"].T)
    assert json.loads((tmp_path / "config.json").read_text())["mem_len"] == config.mem_len

    rng = np.random.default_rng(0)
    batch, length, targets = 2, 6, 2
    ids = rng.integers(0, config.n_token, (batch, length)).astype(np.int32)
    segments = np.array([[0, 0, 0, 1, 1, 2]] * batch, np.int32)
    perm_mask = (rng.random((batch, length, length)) < 0.4).astype(np.float32)
    target_mapping = np.zeros((batch, targets, length), np.float32)
    target_mapping[:, 0, 1] = target_mapping[:, 1, 4] = 1.0
    mems = rng.normal(size=(batch, config.n_layer, config.mem_len, config.d_model)).astype(
        np.float32)
    outputs = ours({"input_ids": ids, "segment_ids": segments, "perm_mask": perm_mask,
                    "target_mapping": target_mapping, "mems": mems}, training=False)
    hf_inputs = dict(input_ids=torch.tensor(ids, dtype=torch.long),
                     token_type_ids=torch.tensor(segments, dtype=torch.long),
                     perm_mask=torch.tensor(perm_mask), use_mems=True,
                     mems=[torch.tensor(mems[:, i].transpose(1, 0, 2))  # [M, B, d] per layer
                           for i in range(config.n_layer)])
    with torch.no_grad():
        logits = hf(target_mapping=torch.tensor(target_mapping), **hf_inputs).logits
        content = hf.transformer(**hf_inputs).last_hidden_state
    np.testing.assert_allclose(outputs["logits"].numpy(), logits.numpy(), atol=TOLERANCE)
    np.testing.assert_allclose(outputs["features"].numpy(), content.numpy(), atol=TOLERANCE)
