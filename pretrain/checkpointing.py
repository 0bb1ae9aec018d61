"""Checkpoints in the model directory: save every N steps, resume from the newest one that
loads, refuse a directory that belongs to another model."""

import json
import logging
import os
import shutil

import tensorflow as tf
import yaml

from xlnet.errors import UserError
from xlnet.atomic_file import write_file

logger = logging.getLogger(__name__)

RUN_CONFIG_FILE = "run_config.yaml"
DATASET_FILE = "dataset.json"
INIT_CHECKPOINT_FILE = "init_checkpoint.json"
# Sections that must equal the checkpoint's: the weights' shapes and the data they continue;
# and the rows whose memory the checkpoint holds.
FIXED_SECTIONS = ("model", "data")
FIXED_TRAIN_KEYS = ("global_batch_size",)


def model_weights(model):
    """The model's variables keyed by their original TF1 names, for tf.train.Checkpoint.

    Keras 3 layers kept in Python lists are invisible to tf.train.Checkpoint, so the model
    object itself would save only its top-level weights; the original names cover them all.
    """
    weights = dict(model.original_variables())
    named = {id(v) for v in weights.values()}
    missing = [v.path for v in model.weights if id(v) not in named]
    if missing:
        raise RuntimeError(f"variables without an original name: {missing}")
    return weights


def check_model_dir(model_dir, run_config):
    """Refuses a model dir whose saved config has another model or data section or global
    batch, naming the field."""
    path = os.path.join(model_dir, RUN_CONFIG_FILE)
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = yaml.safe_load(f) or {}
    current = run_config.to_dict()
    fixed = [(section, key) for section in FIXED_SECTIONS for key in current[section]]
    for section, key in fixed + [("train", key) for key in FIXED_TRAIN_KEYS]:
        value = current[section][key]
        have = (saved.get(section) or {}).get(key)
        if have != value:
            raise UserError(
                f"{model_dir}: holds checkpoints of another run ({section}.{key} is "
                f"{have!r} there but {value!r} now); use a new --model-dir")


def save_run_config(model_dir, run_config, info):
    """Writes the run config and the identity of the dataset the run reads."""
    os.makedirs(model_dir, exist_ok=True)
    write_file(os.path.join(model_dir, RUN_CONFIG_FILE), run_config.to_yaml())
    write_file(os.path.join(model_dir, DATASET_FILE),
                          json.dumps(dataset_identity(info), indent=2, sort_keys=True) + "\n")


def save_init_checkpoint(model_dir, prefix, variables):
    """Records which original checkpoint a run started from (its step 0 weights)."""
    record = {"prefix": os.path.abspath(prefix), "variables": variables}
    write_file(os.path.join(model_dir, INIT_CHECKPOINT_FILE),
                          json.dumps(record, indent=2, sort_keys=True) + "\n")


def dataset_identity(info):
    """What tells one prepared dataset from another (the data position is only meaningful
    in the dataset it counts)."""
    return {"tokenizer_sha256": info.tokenizer.get("sha256"),
            "num_examples": info.num_examples,
            "pass_seeds": [p.get("seed") for p in info.passes]}


def warn_if_other_dataset(model_dir, info):
    path = os.path.join(model_dir, DATASET_FILE)
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)
    for key, value in dataset_identity(info).items():
        if saved.get(key) != value:
            logger.warning("%s: the run started on another dataset (%s was %r, now %r); it "
                           "continues at the same data position in this one", model_dir, key,
                           saved.get(key), value)
            return


class CheckpointStore:
    """tf.train.CheckpointManager with fall-back restore; non-chief workers write to a scratch
    directory (every worker must take part in a save) that is removed afterwards."""

    def __init__(self, checkpoint, model_dir, keep, step, chief=True, worker=0):
        self.checkpoint = checkpoint
        self.model_dir = model_dir
        self.chief = chief
        directory = model_dir if chief else os.path.join(model_dir, f".worker-{worker}")
        self._scratch = None if chief else directory
        self.manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=keep,
                                                  step_counter=step)
        self._chief_manager = self.manager if chief else tf.train.CheckpointManager(
            checkpoint, model_dir, max_to_keep=keep)

    @property
    def latest(self):
        return self._chief_manager.latest_checkpoint

    def restore_newest(self):
        """Restores the newest checkpoint that loads; returns its path, or None for a new run.

        A damaged newest checkpoint (e.g. truncated by a crash during the save) is skipped with
        a warning. If checkpoints exist but none loads, the run stops rather than overwrite.
        """
        candidates = list(reversed(self._chief_manager.checkpoints))
        for path in candidates:
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except Exception as e:  # a truncated data file raises IndexError, not a TF error
                logger.warning("checkpoint %s does not load (%s); trying the previous one",
                               path, str(e).splitlines()[0] if str(e) else type(e).__name__)
                continue
            return path
        if candidates:
            raise UserError(f"{self.model_dir}: none of its {len(candidates)} checkpoints "
                            "loads into this model; use a new --model-dir")
        return None

    def save(self, step):
        path = self.manager.save(checkpoint_number=step)
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
        return path
