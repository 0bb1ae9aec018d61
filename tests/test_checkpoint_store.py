"""Resuming a model dir: CheckpointStore finds the checkpoints on disk (a `checkpoint` state
file missing, garbled, empty or stale resumes from the newest one that loads, and none of its
files is rewritten by a start from step 1); a changed train section needs
allow_config_change and is kept in the history; the dataset's tokenizer is kept beside the
checkpoints. (End to end through `xlnet pretrain`:
test_pretrain_train.py.)"""

import glob
import hashlib
import os

import pytest
import tensorflow as tf

from pretrain.checkpointing import (CheckpointStore, check_model_dir, keep_tokenizer,
                                    record_config_change)
from xlnet.errors import UserError
from xlnet.formats.model_dir import ModelDirectory

STEPS = (10, 20, 30)


def store(model_dir, keep=5):
    """A store of a small real checkpoint (a step counter and a weight that records it)."""
    step = tf.Variable(0, dtype=tf.int64)
    weight = tf.Variable(0.0)
    checkpoint = tf.train.Checkpoint(step=step, weight=weight)
    return CheckpointStore(checkpoint, model_dir, keep, step), step, weight


def saved_run(model_dir):
    checkpoints, step, weight = store(model_dir)
    assert checkpoints.restore_newest() is None
    for n in STEPS:
        step.assign(n)
        weight.assign(float(n))
        checkpoints.save(n)


def file_times(model_dir):
    return {path: os.stat(path).st_mtime_ns
            for path in glob.glob(os.path.join(model_dir, "ckpt-*"))}


def delete(state):
    os.remove(state)


def garble(state):
    with open(state, "w") as f:
        f.write("garbage {{{\n")


def empty(state):
    open(state, "w").close()


def stale(state):  # the state file of an earlier save: it lists ckpt-10 only
    tf.compat.v1.train.update_checkpoint_state(os.path.dirname(state), "ckpt-10")


@pytest.mark.parametrize("damage", [delete, garble, empty, stale])
def test_resumes_from_the_newest_on_disk_and_overwrites_none(tmp_path, damage, caplog):
    model_dir = str(tmp_path / "model")
    saved_run(model_dir)
    damage(os.path.join(model_dir, "checkpoint"))
    before = file_times(model_dir)
    checkpoints, step, weight = store(model_dir)
    assert checkpoints.restore_newest() == os.path.join(model_dir, "ckpt-30")
    assert int(step.numpy()) == 30 and float(weight.numpy()) == 30.0
    assert "resuming from the checkpoints on disk (newest" in caplog.text
    # The state file lists the found checkpoints again, so the manager keeps and deletes them.
    assert ModelDirectory(model_dir).listed_checkpoints() == [
        os.path.join(model_dir, f"ckpt-{n}") for n in STEPS]
    step.assign(31)
    checkpoints.save(31)
    after = file_times(model_dir)
    assert {path: after[path] for path in before} == before  # none rewritten
    assert tf.train.latest_checkpoint(model_dir) == os.path.join(model_dir, "ckpt-31")


def test_found_checkpoints_are_swept_down_to_keep(tmp_path):
    model_dir = str(tmp_path / "model")
    saved_run(model_dir)
    delete(os.path.join(model_dir, "checkpoint"))
    checkpoints, step, _ = store(model_dir, keep=2)
    checkpoints.restore_newest()
    step.assign(31)
    checkpoints.save(31)
    assert ModelDirectory(model_dir).checkpoints() == [
        os.path.join(model_dir, f"ckpt-{n}") for n in (30, 31)]


def test_checkpoint_files_none_of_which_loads_are_refused_not_overwritten(tmp_path):
    model_dir = str(tmp_path / "model")
    saved_run(model_dir)
    delete(os.path.join(model_dir, "checkpoint"))
    for path in glob.glob(os.path.join(model_dir, "ckpt-*.data-*")):
        with open(path, "r+b") as f:
            f.truncate(1)
    before = file_times(model_dir)
    checkpoints, _, _ = store(model_dir)
    with pytest.raises(UserError, match="holds ckpt-\\* files but no checkpoint there loads"):
        checkpoints.restore_newest()
    assert file_times(model_dir) == before
    assert not os.path.exists(os.path.join(model_dir, "checkpoint"))


def test_an_unreadable_state_file_alone_starts_a_new_run(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    empty(str(model_dir / "checkpoint"))
    checkpoints, _, _ = store(str(model_dir))
    assert checkpoints.restore_newest() is None
    assert checkpoints.save(1) == str(model_dir / "ckpt-1")


# ---- a resume whose train section changed -----------------------------------------------------

def run_dir_with_a_checkpoint(model_dir, run_config):
    directory = ModelDirectory(model_dir)
    directory.write_run_config(run_config)
    saved_run(model_dir)
    return directory


def test_a_changed_train_section_needs_allow_config_change_and_is_kept(tmp_path):
    from xlnet import load_run_config

    model_dir = str(tmp_path / "model")
    directory = run_dir_with_a_checkpoint(model_dir, load_run_config("tiny"))
    same_run = load_run_config("tiny", ["train.log_every=1", "train.checkpoint_every=7"])
    assert check_model_dir(model_dir, same_run) == {}  # watching and saving may change
    changed = load_run_config("tiny", ["train.learning_rate=1e-3", "train.seed=5"])
    with pytest.raises(UserError, match=r"train.learning_rate is 0.002 there but 0.001 now, "
                                        r"train.seed is 0 there but 5 now\); pass "
                                        r"--allow-config-change"):
        check_model_dir(model_dir, changed)
    changes = check_model_dir(model_dir, changed, allow_config_change=True)
    assert changes == {"learning_rate": (0.002, 0.001), "seed": (0, 5)}
    record_config_change(model_dir, changes, 30)
    record_config_change(model_dir, {"steps": (300, 400)}, 40)
    history = directory.config_history()
    assert [entry["step"] for entry in history] == [30, 40]  # appended, not overwritten
    assert history[0]["changed"] == {"train.learning_rate": {"was": 0.002, "now": 0.001},
                                     "train.seed": {"was": 0, "now": 5}}


def test_a_changed_train_section_without_checkpoints_starts_over(tmp_path):
    from xlnet import load_run_config

    model_dir = str(tmp_path / "model")
    ModelDirectory(model_dir).write_run_config(load_run_config("tiny"))
    assert check_model_dir(model_dir, load_run_config("tiny", ["train.steps=7"])) == {}


# ---- the tokenizer kept beside the checkpoints ------------------------------------------------

def test_the_datasets_tokenizer_is_copied_when_it_is_the_recorded_one(tmp_path, caplog):
    source = tmp_path / "spiece.model"
    source.write_bytes(b"\x0a\x05model bytes")
    recorded = {"path": str(source), "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    directory = ModelDirectory(str(tmp_path / "model"))
    keep_tokenizer(directory, recorded)
    assert (tmp_path / "model" / "spiece.model").read_bytes() == source.read_bytes()

    source.write_bytes(b"another tokenizer")  # replaced since the dataset was prepared
    keep_tokenizer(directory, recorded)
    assert "not the one the dataset was prepared with" in caplog.text
    caplog.clear()
    caplog.set_level("INFO")
    keep_tokenizer(directory, {"path": str(tmp_path / "gone"), "sha256": recorded["sha256"]})
    assert f"tokenizer {tmp_path / 'gone'} not copied into the model dir" in caplog.text
    # Neither replaced the good copy.
    assert (tmp_path / "model" / "spiece.model").read_bytes() == b"\x0a\x05model bytes"
