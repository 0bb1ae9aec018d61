"""Tiny configurations, random weights in the original names, and HF PyTorch models built from
them: the shared reference for the checkpoint, export and keras-xlnet compatibility tests."""

import numpy as np

from xlnet import XLNetConfig
from xlnet.formats.hf_export import write_hf
from xlnet.formats.original_checkpoint import original_shapes

TINY = XLNetConfig(n_layer=2, d_model=32, n_head=4, d_head=8, d_inner=64, n_token=100,
                   mem_len=8, reuse_len=4, dropout=0.0, dropatt=0.0)


def random_arrays(config, seed=0, scale=0.3):
    """Weights large enough that every term of the attention score matters."""
    rng = np.random.default_rng(seed)
    arrays = {name: (scale * rng.normal(size=shape)).astype(np.float32)
              for name, shape in original_shapes(config).items()}
    for name in arrays:
        if name.endswith("LayerNorm/gamma"):
            arrays[name] += np.float32(1.0)
    return arrays


def hf_model(arrays, config, directory):
    """transformers' XLNetLMHeadModel (eval mode) loaded from our HF export of `arrays`."""
    from transformers import XLNetLMHeadModel

    write_hf(arrays, config, str(directory))
    model, info = XLNetLMHeadModel.from_pretrained(str(directory), output_loading_info=True)
    assert not any(info.values()), info
    return model.eval()
