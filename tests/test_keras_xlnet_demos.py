"""keras-xlnet's demos against this package, their only change the import line: the extraction
demos (token embeddings uni and bi, token embeddings with memory) on a small original-format
release, compared with the project's own XLNetLM, and the fine-tuning flow (a classifier on the
features, trained with model.fit, saved and reloaded)."""

import os

import keras
import numpy as np
import pytest

from xlnet import Tokenizer, load_trained_model_from_checkpoint, ATTENTION_TYPE_UNI, ATTENTION_TYPE_BI

from checkpoint_fixture import TINY, random_arrays
from xlnet.formats.original_checkpoint import assign_to_model, write_original_checkpoint
from xlnet.keras_compat import get_custom_objects
from xlnet.model.xlnet_lm import XLNetLM

TEXT = "All's right with the world"  # the demos' sentence: 7 pieces with the fixture's model
# Words for a small English-like corpus on which an 80-piece model keeps the demo's words
# whole (generated at run time; no corpus text is stored).
WORDS = ("All right with the world is it a of and time day one well There here was now what "
         "how many people said would could should about into over after before under every "
         "little great old new good small house water light night").split()
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """An original release directory: spiece.model, xlnet_config.json, xlnet_model.ckpt."""
    from preprocessing.train_tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("keras_xlnet_demo")
    rng = np.random.default_rng(0)
    os.makedirs(root / "corpus")
    with open(root / "corpus" / "english.txt", "w") as f:
        for _ in range(200):
            for _ in range(5):
                words = [str(rng.choice(WORDS)) + ("'s" if rng.random() < 0.1 else "")
                         for _ in range(8)]
                f.write(" ".join(words) + ".\n")
            f.write("\n")
    directory = root / "xlnet_tiny"
    train_tokenizer(str(root / "corpus" / "*.txt"), 80, str(directory))
    config = TINY.replace(n_token=80)
    arrays = random_arrays(config, seed=5)
    write_original_checkpoint(arrays, config, str(directory))
    return {"directory": str(directory), "config": config, "arrays": arrays}


def demo_paths(release):
    """The demos' paths when given a release directory on the command line."""
    checkpoint_path = release["directory"]
    return (os.path.join(checkpoint_path, "spiece.model"),
            os.path.join(checkpoint_path, "xlnet_config.json"),
            os.path.join(checkpoint_path, "xlnet_model.ckpt"))


def own_features(release, tokens, attn_type):
    """The project's XLNetLM on the same weights, the whole sequence in one pass."""
    config = release["config"].replace(attn_type=attn_type)
    model = XLNetLM(config)
    assign_to_model(model, release["arrays"], config)
    ids = np.array([tokens], np.int32)
    return model({"input_ids": ids, "segment_ids": np.zeros_like(ids)})["features"].numpy()[0]


def test_token_embeddings_uni_and_bi(release):
    vocab_path, config_path, model_path = demo_paths(release)
    tokenizer = Tokenizer(vocab_path)
    tokens = tokenizer.encode(TEXT)
    assert tokenizer.tokenize(TEXT) == ["▁All", "'", "s", "▁right", "▁with", "▁the", "▁world"]

    token_input = np.expand_dims(np.array(tokens), axis=0)
    segment_input = np.zeros_like(token_input)
    memory_length_input = np.zeros((1, 1))
    features = {}
    for attention_type in (ATTENTION_TYPE_UNI, ATTENTION_TYPE_BI):
        model = load_trained_model_from_checkpoint(
            config_path=config_path, checkpoint_path=model_path, batch_size=1, memory_len=0,
            target_len=7, in_train_phase=False, attention_type=attention_type)
        results = model.predict_on_batch([token_input, segment_input, memory_length_input])
        assert results.shape == (1, 7, release["config"].d_model)
        features[attention_type] = results[0]
        np.testing.assert_allclose(results[0], own_features(release, tokens, attention_type),
                                   atol=TOLERANCE)
    # the comparison can fail: the two attention types give other features
    assert np.abs(features[ATTENTION_TYPE_UNI] - features[ATTENTION_TYPE_BI]).max() > 1e-2


def test_token_embeddings_with_memory(release):
    vocab_path, config_path, model_path = demo_paths(release)
    tokenizer = Tokenizer(vocab_path)
    tokens = tokenizer.encode(TEXT)
    target_len, total_len = 3, len(tokens)
    model = load_trained_model_from_checkpoint(
        config_path=config_path, checkpoint_path=model_path, batch_size=1,
        memory_len=total_len, target_len=target_len, in_train_phase=False,
        attention_type=ATTENTION_TYPE_UNI)
    rows = []
    for mem_len in range(0, total_len, target_len):
        index = mem_len // target_len
        sub_tokens = tokens[index * target_len:(index + 1) * target_len]
        padded = sub_tokens + [Tokenizer.SYM_PAD] * (target_len - len(sub_tokens))
        token_input = np.expand_dims(np.array(padded), axis=0)
        segment_input = np.zeros_like(token_input)
        memory_length_input = np.array([[mem_len]])
        results = model.predict_on_batch([token_input, segment_input, memory_length_input])
        rows.extend(results[0, :len(sub_tokens)])
    # uni attention: three tokens at a time with memory equal the whole text at once
    np.testing.assert_allclose(np.stack(rows), own_features(release, tokens, "uni"),
                               atol=TOLERANCE)


def test_tokenizer_is_keras_xlnets(release, tmp_path):
    """keras-xlnet's switches on the pipeline's text handling; the SYM_* ids are the
    vocabulary's."""
    from text_corpus import train_tiny_tokenizer
    from xlnet.tokenizer import Tokenizer as PipelineTokenizer

    spm_path = train_tiny_tokenizer(str(tmp_path / "corpus"), str(tmp_path / "tok"))
    pipeline = PipelineTokenizer.load(spm_path)
    tokenizer = Tokenizer(spm_path, remove_spaces=True, remove_accents=True, cased=True)
    line = "  Kamé  ``ruvi''   2000, 12,345, lo\tto "
    ids = tokenizer.encode(line)
    assert ids == pipeline.encode(line).tolist()  # same normalisation and digit-comma fix-up
    pieces = tokenizer.tokenize(line)
    assert pieces == [pipeline.id_to_piece(i) for i in ids]
    assert "," in pieces and not any(p[-1] == "," and p[:-1][-1:].isdigit() for p in pieces)
    assert tokenizer.decode(ids) == 'Kame "ruvi" 2000, 12,345, lo to'
    assert Tokenizer(spm_path, cased=False).decode(Tokenizer(spm_path, cased=False).encode(
        "KA Lo")) == "ka lo"
    kept = Tokenizer(spm_path).tokenize("é")  # remove_accents=False by default, as keras-xlnet
    assert kept != Tokenizer(spm_path, remove_accents=True).tokenize("é")
    specials = {name: getattr(Tokenizer, f"SYM_{name}") for name in (
        "UNK", "BOS", "EOS", "CLS", "SEP", "PAD", "MASK", "EOD", "EOP")}
    assert [pipeline.id_to_piece(i) for i in specials.values()] == [
        "<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]
    sampled = Tokenizer(spm_path, sample=True)
    assert sampled.decode(sampled.encode("kalomi nerusa")) == "kalomi nerusa"


def classification_data(tokenizer, rng, count, seq_len):
    """keras-xlnet's fine-tuning input: pieces left-padded with <pad>, then <cls>; segment 1
    on <cls>; memory lengths 0. Label 1 when the sentence names the world."""
    tokens, labels = [], []
    for index in range(count):
        words = [str(w) for w in rng.choice(WORDS[:4] + WORDS[5:12], size=3)]
        label = index % 2
        if label:
            words[int(rng.integers(0, 3))] = "world"
        encoded = tokenizer.encode(" ".join(words))[:seq_len - 1]
        tokens.append([Tokenizer.SYM_PAD] * (seq_len - 1 - len(encoded)) + encoded
                      + [Tokenizer.SYM_CLS])
        labels.append(label)
    tokens = np.array(tokens)
    segments = np.zeros_like(tokens)
    segments[:, -1] = 1
    return [tokens, segments, np.zeros_like(tokens[:, :1])], np.array(labels)


def test_fine_tuning_flow_learns_and_reloads(release, tmp_path):
    vocab_path, config_path, model_path = demo_paths(release)
    seq_len, batch_size = 8, 16
    tokenizer = Tokenizer(vocab_path)
    model = load_trained_model_from_checkpoint(
        config_path=config_path, checkpoint_path=model_path, batch_size=batch_size,
        memory_len=0, target_len=seq_len, in_train_phase=False,
        attention_type=ATTENTION_TYPE_BI)
    # The features at <cls>, the last position, feed a small classifier head.
    last = keras.layers.Flatten(name="Extract")(
        keras.layers.Cropping1D((seq_len - 1, 0), name="Last")(model.output))
    dense = keras.layers.Dense(units=32, activation="tanh", name="Dense")(last)
    dropout = keras.layers.Dropout(rate=0.1, name="Dropout")(dense)
    output = keras.layers.Dense(units=2, activation="softmax", name="Softmax")(dropout)
    classifier = keras.models.Model(inputs=model.inputs, outputs=output)
    classifier.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                       loss="sparse_categorical_crossentropy",
                       metrics=["sparse_categorical_accuracy"])

    rng = np.random.default_rng(1)
    train_x, train_y = classification_data(tokenizer, rng, 256, seq_len)
    test_x, test_y = classification_data(tokenizer, rng, 128, seq_len)
    classifier.fit(train_x, train_y, batch_size=batch_size, epochs=6, verbose=0)
    predicted = classifier.predict(test_x, batch_size=batch_size, verbose=0)
    accuracy = float((predicted.argmax(-1) == test_y).mean())
    assert accuracy >= 0.9, accuracy  # chance is 0.5

    path = tmp_path / "classifier.keras"
    classifier.save(path)
    reloaded = keras.models.load_model(path, custom_objects=get_custom_objects())
    np.testing.assert_allclose(reloaded.predict(test_x, batch_size=batch_size, verbose=0),
                               predicted, atol=1e-6)
