"""CheckpointStore finds the checkpoints on disk: a model dir whose `checkpoint` state file is
missing, garbled, empty or stale resumes from the newest checkpoint that loads, and none of its
files is rewritten by a start from step 1. (End to end through `xlnet pretrain`:
test_pretrain_train.py.)"""

import glob
import os

import pytest
import tensorflow as tf

from pretrain.checkpointing import CheckpointStore
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
