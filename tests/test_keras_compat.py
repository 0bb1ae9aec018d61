"""keras-xlnet's API against HuggingFace transformers' PyTorch XLNet with the same weights."""

import contextlib
import io
import json
import os

import keras
import numpy as np
import pytest
import torch

from checkpoint_fixture import TINY, hf_model, random_arrays
from xlnet import UserError
from xlnet.keras_compat import (ATTENTION_TYPE_BI, ATTENTION_TYPE_UNI, build_xlnet,
                                get_custom_objects, load_model_weights_from_checkpoint,
                                load_trained_model_from_checkpoint)
from xlnet.formats.original_checkpoint import write_original_checkpoint
from xlnet.schema import PAD_ID

TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=[True, False], ids=["untied", "tied"])
def release(request, tmp_path_factory):
    """An original-format release directory and the HF model holding the same weights."""
    config = TINY.replace(untie_r=request.param, mem_len=7, reuse_len=3)
    arrays = random_arrays(config, seed=3)
    directory = tmp_path_factory.mktemp("release")
    prefix = write_original_checkpoint(arrays, config, str(directory / "original"))
    return {"config": config, "arrays": arrays, "prefix": prefix,
            "config_path": str(directory / "original" / "xlnet_config.json"),
            "hf": hf_model(arrays, config, directory / "hf")}


def load(release, **kwargs):
    return load_trained_model_from_checkpoint(release["config_path"], release["prefix"],
                                              **kwargs)


def hf_features(hf, ids, segments, mems=None, attention_mask=None):
    with torch.no_grad():
        out = hf.transformer(
            input_ids=torch.tensor(ids), token_type_ids=torch.tensor(segments),
            attention_mask=None if attention_mask is None else torch.tensor(attention_mask),
            mems=mems, use_mems=True)
    return out.last_hidden_state.numpy(), out.mems


def test_layers_carry_keras_xlnet_names(release):
    model = load(release, batch_size=1, memory_len=7, target_len=3, in_train_phase=True)
    assert [i.name for i in model.inputs] == [
        "Input-Token", "Input-Segment", "Input-Memory-Length", "Input-Mask"]
    names = {layer.name for layer in model.layers}
    per_block = ("Embed-Segment", "Attention", "Attention-Residual", "Attention-Normal",
                 "FeedForward", "FeedForward-Residual", "FeedForward-Normal")
    expected = {"Embed-Token", "Masking", "Embed-Token-Masked", "Embed-Mask", "Memory-0",
                "Memory-1", "Embed-Pos", "Permutation", "Softmax"}
    expected |= {f"{name}-{block}" for name in per_block for block in (1, 2)}
    if release["config"].untie_r:
        expected |= {f"{name}-{b}" for name in ("Relative-Bias", "Segment-Bias") for b in (1, 2)}
    else:
        expected |= {"Relative-Bias", "Segment-Bias"}
    assert expected <= names
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        model.summary(line_length=150)
    assert "FeedForward-Normal-2" in summary.getvalue()
    # get_layer gives the loaded weights, as keras-xlnet users pick them for feature extraction
    np.testing.assert_array_equal(
        model.get_layer("Embed-Token").get_weights()[0],
        release["arrays"]["model/transformer/word_embedding/lookup_table"])
    features = load(release, batch_size=None, memory_len=0, target_len=3, in_train_phase=False)
    assert [i.name for i in features.inputs] == [
        "Input-Token", "Input-Segment", "Input-Memory-Length"]


def test_token_embeddings_with_memory_match_hf(release):
    """The seed's token_embeddings_with_memory: memory_len=7, target_len=3 over 7 tokens, uni."""
    tokens = [17, 42, 9, 73, 28, 55, 61]
    model = load(release, batch_size=1, memory_len=7, target_len=3, in_train_phase=False,
                 attention_type=ATTENTION_TYPE_UNI)
    hf = release["hf"]
    hf.transformer.attn_type = "uni"
    ours, theirs, mems = [], [], None
    for start in range(0, len(tokens), 3):
        chunk = tokens[start:start + 3]
        ids = np.array([chunk + [PAD_ID] * (3 - len(chunk))])
        segments = np.zeros_like(ids)
        ours.append(model.predict([ids, segments, np.array([[start]])], verbose=0)[0, :len(chunk)])
        expected, mems = hf_features(hf, ids, segments, mems=mems)
        theirs.append(expected[0, :len(chunk)])
        mems = [m[:start + 3] for m in mems]  # HF caches the padding too; keep valid rows
    ours, theirs = np.concatenate(ours), np.concatenate(theirs)
    np.testing.assert_allclose(ours, theirs, atol=TOLERANCE)
    whole, _ = hf_features(hf, np.array([tokens]), np.zeros((1, 7), np.int64))
    np.testing.assert_allclose(ours, whole[0], atol=TOLERANCE)  # uni: chunks == one pass
    hf.transformer.attn_type = "bi"


def test_memory_is_kept_per_batch_row(release):
    """Row 0 continues its text with 3 memory positions while row 1 starts a new one; bi
    attention, all three segment ids, a padded key."""
    model = load(release, batch_size=2, memory_len=4, target_len=3, in_train_phase=False)
    first = np.array([[11, 12, 13], [21, 22, 23]])
    second = np.array([[14, 15, PAD_ID], [31, 32, 33]])
    segments = np.array([[0, 1, 2], [1, 0, 2]])
    model.predict([first, segments, np.array([[0], [0]])], verbose=0)
    ours = model.predict([second, segments, np.array([[3], [0]])], verbose=0)
    hf = release["hf"]
    _, mems = hf_features(hf, first[:1], segments[:1])
    row0, _ = hf_features(hf, second[:1], segments[:1], mems=mems,
                          attention_mask=np.array([[1, 1, 0]]))
    row1, _ = hf_features(hf, second[1:], segments[1:])
    np.testing.assert_allclose(ours[0, :2], row0[0, :2], atol=TOLERANCE)
    np.testing.assert_allclose(ours[1], row1[0], atol=TOLERANCE)
    # keras-xlnet's layout [batch, M + T, d]: the memory the call read, then its inputs
    stored = model.get_layer("Memory-0").get_weights()[0]
    assert stored.shape == (2, 4 + 3, release["config"].d_model)
    table = release["arrays"]["model/transformer/word_embedding/lookup_table"]
    np.testing.assert_array_equal(stored[0, 0], np.zeros_like(table[0]))  # never written
    np.testing.assert_array_equal(stored[0, 1:], table[[11, 12, 13, 14, 15, PAD_ID]])
    np.testing.assert_array_equal(stored[1, 1:], table[[21, 22, 23, 31, 32, 33]])


def test_train_phase_predicts_masked_tokens_from_unmasked_context(release):
    config = release["config"]
    model = load(release, batch_size=None, memory_len=0, target_len=6, in_train_phase=True)
    ids = np.array([[11, 12, 13, 14, 15, 16], [21, 22, 23, 24, 25, 26]])
    segments = np.array([[0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 1, 2]])
    predict = np.array([[0, 1, 1, 0, 0, 0], [1, 0, 0, 0, 1, 0]])
    probabilities = model.predict([ids, segments, np.zeros((2, 1)), predict], verbose=0)
    assert probabilities.shape == (2, 6, config.n_token)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)

    # HF's two-stream model, told the same thing: no query may see a masked token
    positions = [np.flatnonzero(row) for row in predict]
    target_mapping = np.zeros((2, 2, 6), np.float32)
    for row, where in enumerate(positions):
        target_mapping[row, [0, 1], where] = 1.0
    perm_mask = np.broadcast_to(predict[:, None, :], (2, 6, 6)).astype(np.float32)
    with torch.no_grad():
        logits = release["hf"](input_ids=torch.tensor(ids), token_type_ids=torch.tensor(segments),
                               perm_mask=torch.tensor(perm_mask),
                               target_mapping=torch.tensor(target_mapping)).logits
    expected = torch.softmax(logits, -1).numpy()
    for row, where in enumerate(positions):
        np.testing.assert_allclose(probabilities[row, where], expected[row], atol=TOLERANCE)

    # No leak: other ids at the masked positions leave the masked rows' predictions as they are
    changed = np.where(predict == 1, 77, ids)
    again = model.predict([changed, segments, np.zeros((2, 1)), predict], verbose=0)
    for row, where in enumerate(positions):
        np.testing.assert_allclose(again[row, where], probabilities[row, where], atol=1e-6)
    # ...while an unmasked token does move them (the comparison above can fail)
    context_changed = ids.copy()
    context_changed[:, 3] = 77
    moved = model.predict([context_changed, segments, np.zeros((2, 1)), predict], verbose=0)
    assert np.abs(moved[0, positions[0]] - probabilities[0, positions[0]]).max() > 1e-4


def test_checkpoint_that_does_not_fit_is_refused_before_building(release, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_trained_model_from_checkpoint(release["config_path"], release["prefix"] + "-9")
    bad = tmp_path / "xlnet_config.json"
    with open(bad, "w") as f:
        json.dump({**release["config"].to_original_json(), "n_layer": 3}, f)
    with pytest.raises(UserError, match="the checkpoint has 2 layers: set n_layer: 2"):
        load_trained_model_from_checkpoint(bad, release["prefix"])


def test_model_that_does_not_fit_is_refused(release):
    config = release["config"]
    other = build_xlnet(units=config.d_model, training=False, num_token=config.n_token,
                        num_block=config.n_layer, num_head=config.n_head,
                        hidden_dim=config.d_inner, batch_size=None, memory_len=0, target_len=3,
                        shared_biases=config.untie_r)
    before = [w.copy() for w in other.get_weights()]
    with pytest.raises(UserError, match="does not match the checkpoint"):
        load_model_weights_from_checkpoint(other, config, release["prefix"], False)
    assert all(np.array_equal(a, b) for a, b in zip(before, other.get_weights()))


@pytest.mark.parametrize("kwargs,message", [
    (dict(memory_len=4, batch_size=None), "batch_size: needed when memory_len > 0"),
    (dict(permute=True), "permute"),
    (dict(attention_type="left"), "attention_type"),
])
def test_bad_arguments(kwargs, message):
    arguments = dict(units=32, training=True, num_token=100, num_block=1, num_head=4,
                     hidden_dim=64, batch_size=1, memory_len=0, target_len=3,
                     attention_type=ATTENTION_TYPE_BI)
    with pytest.raises(UserError, match=message):
        build_xlnet(**{**arguments, **kwargs})


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    """The README section's example, as written, on a tiny release in the released layout."""
    from text_corpus import train_tiny_tokenizer

    release = tmp_path / "xlnet_cased_L-12_H-768_A-12"
    train_tiny_tokenizer(str(tmp_path / "corpus"), str(release), vocab_size=300)
    config = TINY.replace(n_token=300)
    arrays = random_arrays(config, seed=7)
    write_original_checkpoint(arrays, config, str(release))
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")) as f:
        section = f.read().split("## Coming from keras-xlnet or the original release")[1]
    code = section.split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the documented example
    printed = capsys.readouterr().out
    assert printed.count("[[") == -(-len(namespace["tokens"]) // 3)  # one block per chunk
    lm_weights = namespace["lm"].original_variables()
    np.testing.assert_array_equal(lm_weights["model/lm_loss/bias"].numpy(),
                                  arrays["model/lm_loss/bias"])


def test_dropout_and_fit_for_fine_tuning():
    """build_xlnet with dropout trains with model.fit; inference stays deterministic."""
    model = build_xlnet(units=32, training=True, num_token=100, num_block=2, num_head=4,
                        hidden_dim=64, batch_size=4, memory_len=6, target_len=5, dropout=0.1,
                        attention_dropout=0.1, seed=1)
    ids = np.random.default_rng(0).integers(9, 100, (4, 5))
    predict = np.zeros_like(ids)
    predict[:, 2] = 1
    inputs = [ids, np.zeros_like(ids), np.zeros((4, 1), np.int32), predict]
    first, second = (model(inputs, training=True).numpy() for _ in range(2))
    assert np.abs(first - second).max() > 1e-4  # a fresh dropout mask per call
    np.testing.assert_array_equal(model(inputs).numpy(), model(inputs).numpy())
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = model.get_layer("FeedForward-1").get_weights()[0].copy()
    model.fit(inputs, ids, epochs=1, batch_size=4, verbose=0)
    assert not np.array_equal(before, model.get_layer("FeedForward-1").get_weights()[0])


def test_saved_model_file_reloads_with_its_memory(release, tmp_path):
    """model.save / keras.models.load_model(custom_objects=get_custom_objects()), as with
    keras-xlnet; the memory kept so far travels with the weights."""
    model = load(release, batch_size=1, memory_len=4, target_len=3, in_train_phase=False)
    segments = np.zeros((1, 3), np.int32)
    model.predict([np.array([[11, 12, 13]]), segments, np.array([[0]])], verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras",
                                     custom_objects=get_custom_objects())
    follow_up = [np.array([[14, 15, 16]]), segments, np.array([[3]])]
    np.testing.assert_array_equal(loaded.predict(follow_up, verbose=0),
                                  model.predict(follow_up, verbose=0))
