"""XLNetLM against HuggingFace transformers' PyTorch XLNetLMHeadModel with the same weights.

HF is run with `gelu_new` (the original's tanh GELU) in eval mode; weights go across through
`original_variables()` and the original->HF name map (original-xlnet.md §7.2, §11). Three
consecutive segments carry memory, started either from M zero slots (the original's start) or from
no memory (HF's `mems=None`)."""

import numpy as np
import pytest

from xlnet.config.model_config import XLNetConfig
from xlnet.formats.hf_export import hf_state_dict
from xlnet.model.xlnet_lm import XLNetLM

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

BATCH, SEQ_LEN, NUM_TARGETS, SEGMENTS = 4, 8, 3, 3
TOLERANCE = 1e-4


def tiny_config(**changes):
    base = dict(n_layer=2, d_model=32, n_head=4, d_head=8, d_inner=64, n_token=100,
                mem_len=6, reuse_len=4, dropout=0.0, dropatt=0.0)
    return XLNetConfig(**{**base, **changes})


def randomize(model, seed):
    """Values far from the initializer's (biases, LayerNorms non-trivial) so every term counts."""
    rng = np.random.default_rng(seed)
    for name, variable in model.original_variables().items():
        scale = 0.5 if ("bias" in name or "seg_embed" in name or "lookup" in name
                        or "mask_emb" in name) else 0.2
        value = rng.normal(0.0, scale, variable.shape)
        if name.endswith("gamma"):
            value = 1.0 + 0.1 * value
        variable.assign(value.astype(np.float32))


def hf_model_from(model):
    """An HF XLNetLMHeadModel holding `model`'s weights, mapped by original names (the export's
    name map, so a mapping error shows here as well as in the export's own test)."""
    c = model.config
    hf = transformers.XLNetLMHeadModel(transformers.XLNetConfig(
        vocab_size=c.n_token, d_model=c.d_model, n_layer=c.n_layer, n_head=c.n_head,
        d_inner=c.d_inner, ff_activation="gelu_new", untie_r=c.untie_r, attn_type=c.attn_type,
        bi_data=c.bi_data, clamp_len=c.clamp_len, mem_len=c.mem_len, reuse_len=c.reuse_len,
        dropout=0.0, layer_norm_eps=1e-12, use_mems_eval=True))
    original = {name: v.numpy() for name, v in model.original_variables().items()}
    state = hf_state_dict(original, c)
    missing, unexpected = hf.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=False)
    assert set(missing) <= {"lm_loss.weight"} and not unexpected, (missing, unexpected)
    hf.lm_loss.weight = hf.transformer.word_embedding.weight
    return hf.eval()


def segment_inputs(rng, n_token):
    """One segment: permutation-style perm_mask, one-hot target rows (one padding row)."""
    input_ids = rng.integers(0, n_token, (BATCH, SEQ_LEN)).astype(np.int32)
    segment_ids = rng.integers(0, 3, (BATCH, SEQ_LEN)).astype(np.int32)
    perm_mask = np.zeros((BATCH, SEQ_LEN, SEQ_LEN), np.float32)
    target_mapping = np.zeros((BATCH, NUM_TARGETS, SEQ_LEN), np.float32)
    for b in range(BATCH):
        rank = rng.permutation(SEQ_LEN)
        targets = rng.choice(SEQ_LEN, NUM_TARGETS, replace=False)
        is_target = np.isin(np.arange(SEQ_LEN), targets)
        # i may not see a target j that comes at or after i in the factorisation order
        perm_mask[b] = (rank[None, :] >= rank[:, None]) & is_target[None, :]
        rows = NUM_TARGETS - 1 if b == 0 else NUM_TARGETS  # example 0 has a padding row
        target_mapping[b, np.arange(rows), targets[:rows]] = 1.0
    return {"input_ids": input_ids, "segment_ids": segment_ids, "perm_mask": perm_mask,
            "target_mapping": target_mapping}


def run_hf(hf, inputs, mems, rows):
    """HF on the given batch rows; returns (features [b,L,d], logits, mems list of [M,b,d])."""
    args = {"input_ids": inputs["input_ids"][rows].astype(np.int64),
            "token_type_ids": inputs["segment_ids"][rows].astype(np.int64),
            "perm_mask": inputs["perm_mask"][rows],
            "target_mapping": inputs["target_mapping"][rows]}
    args = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in args.items()}
    hf_mems = None if mems is None else [torch.from_numpy(np.ascontiguousarray(m[:, rows]))
                                         for m in mems]
    with torch.no_grad():
        out = hf(**args, mems=hf_mems, use_mems=True, output_hidden_states=True)
    return (out.hidden_states[-2].numpy(), out.logits.numpy(),
            [m.numpy() for m in out.mems])


def run_hf_batch(hf, inputs, mems, one_row_at_a_time):
    """HF `uni` with perm_mask fails for batch > 1 (original-xlnet.md §11): then one row at a
    time."""
    if not one_row_at_a_time:
        return run_hf(hf, inputs, mems, slice(None))
    parts = [run_hf(hf, inputs, mems, slice(b, b + 1)) for b in range(BATCH)]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            [np.concatenate([p[2][i] for p in parts], axis=1) for i in range(len(parts[0][2]))])


@pytest.mark.parametrize("changes,zero_start", [
    (dict(attn_type="bi"), True),
    (dict(attn_type="bi", bi_data=True), True),
    (dict(attn_type="bi", bi_data=True, clamp_len=5), False),
    (dict(attn_type="bi", untie_r=False), False),
    (dict(attn_type="uni"), True),
])
def test_matches_hf_over_three_segments_with_memory(changes, zero_start):
    config = tiny_config(**changes)
    model = XLNetLM(config)
    randomize(model, seed=1)
    hf = hf_model_from(model)
    rng = np.random.default_rng(2)
    one_row = config.attn_type == "uni"

    M, D = config.mem_len, config.d_model
    ours_mems = np.zeros((BATCH, config.n_layer, M, D), np.float32) if zero_start else None
    hf_mems = [np.zeros((M, BATCH, D), np.float32)] * config.n_layer if zero_start else None
    filled = M if zero_start else 0
    for segment in range(SEGMENTS):
        inputs = segment_inputs(rng, config.n_token)
        ours_inputs = dict(inputs, mems=ours_mems)
        if ours_mems is not None and filled < M:
            ours_inputs["memory_length"] = np.full([BATCH], filled, np.int32)
        ours = model(ours_inputs, training=False)
        features, logits, hf_mems = run_hf_batch(hf, inputs, hf_mems, one_row)

        np.testing.assert_allclose(ours["features"].numpy(), features, atol=TOLERANCE,
                                   err_msg=f"features, segment {segment}")
        np.testing.assert_allclose(ours["logits"].numpy(), logits, atol=TOLERANCE,
                                   err_msg=f"logits, segment {segment}")
        ours_mems = ours["new_mems"].numpy()  # [B, N, M, d]
        hf_stacked = np.stack(hf_mems, axis=1).transpose(2, 1, 0, 3)  # [B, N, m, d]
        rows = hf_stacked.shape[2]
        np.testing.assert_allclose(ours_mems[:, :, M - rows:], hf_stacked, atol=TOLERANCE,
                                   err_msg=f"memory, segment {segment}")
        np.testing.assert_array_equal(ours_mems[:, :, :M - rows], 0.0)
        filled = min(M, filled + config.reuse_len)
        assert rows == filled
