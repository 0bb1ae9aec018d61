"""Checkpoints in the model directory: save every N steps, resume from the newest one that
loads, refuse a directory that belongs to another model."""

import logging

import tensorflow as tf

from xlnet.errors import UserError
from xlnet.formats.model_dir import ModelDirectory, restore_newest

logger = logging.getLogger(__name__)

# Sections that must equal the checkpoint's: the weights' shapes and the data they continue;
# and the rows whose memory the checkpoint holds.
FIXED_SECTIONS = ("model", "data")
FIXED_TRAIN_KEYS = ("global_batch_size",)


def check_model_dir(model_dir, run_config):
    """Refuses a model dir whose saved config has another model or data section or global
    batch, naming the field."""
    saved = ModelDirectory(model_dir).saved_config()
    if saved is None:
        return
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
    directory = ModelDirectory(model_dir)
    directory.write_run_config(run_config)
    directory.write_dataset_identity(info.identity())


def warn_if_other_dataset(model_dir, info):
    saved = ModelDirectory(model_dir).dataset_identity()
    if saved is None:
        return
    for key, value in info.identity().items():
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
        directory = model_dir if chief else ModelDirectory(model_dir).worker_scratch_dir(worker)
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
        If checkpoints exist but none loads, the run stops rather than overwrite them."""
        candidates = self._chief_manager.checkpoints
        path = restore_newest(self.checkpoint, candidates, logger)
        if candidates and path is None:
            raise UserError(f"{self.model_dir}: none of its {len(candidates)} checkpoints "
                            "loads into this model; use a new --model-dir")
        return path

    def save(self, step):
        path = self.manager.save(checkpoint_number=step)
        if self._scratch and tf.io.gfile.exists(self._scratch):
            tf.io.gfile.rmtree(self._scratch)
        return path
