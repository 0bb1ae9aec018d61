"""`xlnet export` from a real trainer's model directory (two tiny training steps)."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import torch

from dataset_fixture import write_dataset
from xlnet import load_run_config
from xlnet.commands.main import main
from xlnet.formats.original_checkpoint import (assign_to_model, model_arrays,
                                             read_original_checkpoint)
from xlnet.model.xlnet_lm import XLNetLM

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The trainer's model dir after 2 steps, the trainer's weights, and a forward-reading
    model holding them."""
    from pretrain.trainer import Trainer

    root = tmp_path_factory.mktemp("run")
    run_config = load_run_config("tiny", ["train.steps=2", "train.checkpoint_every=2",
                                          "train.log_every=1"])
    write_dataset(str(root / "data"), run_config, segments_per_stream=3)
    model_dir = str(root / "model")
    trainer = Trainer(run_config, str(root / "data"), model_dir, tf.distribute.get_strategy())
    trainer.train()  # the last step is checkpointed: trainer.model holds the saved weights
    config = run_config.model
    arrays = model_arrays(trainer.model)
    forward = XLNetLM(config.replace(bi_data=False))  # exports read text forward
    assign_to_model(forward, arrays, config)
    return {"model_dir": model_dir, "config": config, "arrays": arrays, "model": forward,
            "data": run_config.data}


def export(model_dir, fmt, output):
    return main(["export", "--model-dir", str(model_dir), "--format", fmt, "--output",
                 str(output)])


def sample_inputs(config, length, targets, batch=3):
    rng = np.random.default_rng(1)
    target_mapping = np.zeros((batch, targets, length), np.float32)
    target_mapping[:, np.arange(targets), rng.choice(length, targets, replace=False)] = 1.0
    half = length // 2
    return {"input_ids": rng.integers(9, config.n_token, (batch, length)).astype(np.int32),
            "segment_ids": np.array([[0] * half + [1] * (length - half - 1) + [2]] * batch,
                                    np.int32),
            "perm_mask": (rng.random((batch, length, length)) < 0.4).astype(np.float32),
            "target_mapping": target_mapping}


def test_ours_to_original_tf_to_ours_is_bit_identical(trained, tmp_path):
    assert export(trained["model_dir"], "original-tf", tmp_path / "original") == 0
    assert sorted(os.listdir(tmp_path / "original")) == [
        "checkpoint", "xlnet_config.json", "xlnet_model.ckpt.data-00000-of-00001",
        "xlnet_model.ckpt.index"]
    config, before = trained["config"], trained["arrays"]
    assert any(np.abs(v).max() > 0 for v in before.values())
    back = XLNetLM(config)
    assign_to_model(back, read_original_checkpoint(str(tmp_path / "original"), config), config)
    after = model_arrays(back)
    assert list(after) == list(before)
    for name, value in before.items():
        assert after[name].tobytes() == value.tobytes(), name
    # ...and an original-format directory exports again, unchanged, with its tokenizer
    (tmp_path / "original" / "spiece.model").write_bytes(b"sentencepiece model bytes")
    assert export(tmp_path / "original", "original-tf", tmp_path / "again") == 0
    again = read_original_checkpoint(str(tmp_path / "again"), config)
    assert all(again[n].tobytes() == v.tobytes() for n, v in before.items())
    assert (tmp_path / "again" / "spiece.model").read_bytes() == b"sentencepiece model bytes"


def test_hf_export_gives_the_same_logits(trained, tmp_path):
    from transformers import XLNetLMHeadModel

    assert export(trained["model_dir"], "hf", tmp_path / "hf") == 0
    hf, info = XLNetLMHeadModel.from_pretrained(str(tmp_path / "hf"), output_loading_info=True)
    assert not any(info.values()), info
    inputs = sample_inputs(trained["config"], length=8, targets=2)
    ours = trained["model"](inputs, training=False)["logits"].numpy()
    with torch.no_grad():
        theirs = hf.eval()(**{"input_ids": torch.tensor(inputs["input_ids"], dtype=torch.long),
                              "token_type_ids": torch.tensor(inputs["segment_ids"],
                                                             dtype=torch.long),
                              "perm_mask": torch.tensor(inputs["perm_mask"]),
                              "target_mapping": torch.tensor(inputs["target_mapping"])}).logits
    np.testing.assert_allclose(ours, theirs.numpy(), atol=TOLERANCE)


def test_saved_model_serves_the_same_outputs(trained, tmp_path):
    assert export(trained["model_dir"], "saved-model", tmp_path / "served") == 0
    loaded = tf.saved_model.load(str(tmp_path / "served"))
    data = trained["data"]
    inputs = sample_inputs(trained["config"], data.seq_len, data.num_predict)
    expected = trained["model"](inputs, training=False)
    served = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in inputs.items()})
    np.testing.assert_allclose(served["logits"].numpy(), expected["logits"].numpy(), atol=1e-5)
    features = loaded.signatures["features"](input_ids=tf.constant(inputs["input_ids"]),
                                             segment_ids=tf.constant(inputs["segment_ids"]))
    plain = trained["model"]({"input_ids": inputs["input_ids"],
                              "segment_ids": inputs["segment_ids"]}, training=False)
    np.testing.assert_allclose(features["features"].numpy(), plain["features"].numpy(),
                               atol=1e-5)


def test_user_errors_are_one_line(trained, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    other = tmp_path / "other-run"  # a run config beside a checkpoint of something else
    other.mkdir()
    shutil.copy(os.path.join(trained["model_dir"], "run_config.yaml"), other)
    tf.train.Checkpoint(step=tf.Variable(1)).save(str(other / "ckpt"))
    cases = [
        (other, tmp_path / "out", "cannot restore the model from this checkpoint"),
        (trained["model_dir"], tmp_path / "taken", "exists and is not empty"),
        (tmp_path / "missing", tmp_path / "out", "no such directory"),
        (tmp_path / "taken", tmp_path / "out", "holds neither run_config.yaml"),
    ]
    for flag, value in (("--seq-len", "-3"), ("--seq-len", "0"), ("--num-predict", "0")):
        assert main(["export", "--model-dir", trained["model_dir"], "--format", "saved-model",
                     "--output", str(tmp_path / "out"), flag, value]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines()
                  if line.startswith("error:")]
        assert errors == [f"error: {flag} {value}: must be positive (or leave it out for the "
                          "run's value)"]
    for model_dir, output, message in cases:
        assert export(model_dir, "original-tf", output) == 2
        errors = [line for line in capsys.readouterr().err.splitlines()
                  if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], errors
    assert not os.path.exists(tmp_path / "out")
    assert not [name for name in os.listdir(tmp_path) if ".partial-" in name]


def _own_copy(trained, tmp_path):
    """A copy of the trained model dir holding a tokenizer (the trainer copies the dataset's;
    this dataset is synthetic and has none)."""
    model_dir = tmp_path / "model"
    shutil.copytree(trained["model_dir"], model_dir)
    (model_dir / "spiece.model").write_bytes(b"\x0a\x05tokenizer")
    return model_dir


@pytest.mark.parametrize("umask", [0o027, 0o002])
def test_exports_carry_the_tokenizer_and_follow_the_umask(trained, tmp_path, umask):
    model_dir = _own_copy(trained, tmp_path)
    previous = os.umask(umask)
    try:
        for fmt in ("original-tf", "hf"):
            assert export(model_dir, fmt, tmp_path / fmt) == 0
    finally:
        os.umask(previous)
    for fmt in ("original-tf", "hf"):
        output = tmp_path / fmt
        assert (output / "spiece.model").read_bytes() == b"\x0a\x05tokenizer"
        assert oct(output.stat().st_mode & 0o777) == oct(0o777 & ~umask)
        for path in output.iterdir():
            assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~umask), path


@pytest.mark.parametrize("link", ["spiece.model", "run_config.yaml", "ckpt-2.index"])
def test_a_link_leading_out_of_the_model_dir_is_refused(trained, tmp_path, capsys, link):
    model_dir = _own_copy(trained, tmp_path)
    secret = tmp_path / "secret"
    shutil.copy(model_dir / link, secret)  # even a file export could read, but not its own
    os.remove(model_dir / link)
    os.symlink(secret, model_dir / link)
    assert export(model_dir, "hf", tmp_path / "out") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {model_dir / link}: a link to {secret}, outside {model_dir}; "
                      "only files inside the model directory are read (replace the link by a "
                      "copy of the file)"]
    assert not os.path.exists(tmp_path / "out")
    os.remove(model_dir / link)  # a link within the model dir is fine
    os.rename(secret, model_dir / f"{link}.real")
    os.symlink(f"{link}.real", model_dir / link)
    assert export(model_dir, "hf", tmp_path / "out") == 0
