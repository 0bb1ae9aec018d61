"""Checkpoints in the model directory: save every N steps, resume from the newest one on disk
that loads, refuse a directory that belongs to another model or (without
--allow-config-change) a resume whose train section changed; keep the tokenizer beside them."""

import hashlib
import logging

import tensorflow as tf

from pretrain.memory_shards import remove_swept
from xlnet.config.train_config import TrainConfig
from xlnet.errors import UserError
from xlnet.formats.model_dir import (CHECKPOINT_NAME, CHECKPOINT_STATE_FILE, RUN_CONFIG_FILE,
                                     RUN_CONFIG_HISTORY_FILE, ModelDirectory, checkpoint_step,
                                     restore_newest)
from xlnet.tokenizer import TOKENIZER_FILE

logger = logging.getLogger(__name__)

# Sections that must equal the checkpoint's: the weights' shapes and the data they continue;
# and the rows whose memory the checkpoint holds.
FIXED_SECTIONS = ("model", "data")
FIXED_TRAIN_KEYS = ("global_batch_size",)
# Train keys a resume may change freely: how the run is watched, saved and executed, not what
# it learns. (jit_compile and remat change float rounding only; checkpoints keep memory by row
# identity, so the strategy's replica count may change.) Any other train key (steps, which
# shapes the learning-rate schedule, the rate itself, the seed, ...) needs
# --allow-config-change.
FREE_TRAIN_KEYS = ("log_every", "checkpoint_every", "keep_checkpoints", "eval_every",
                   "eval_segments", "peak_tflops", "strategy", "jit_compile", "remat",
                   "cluster_timeout", "loss_scale")


def check_model_dir(model_dir, run_config, allow_config_change=False):
    """Refuses a model dir whose saved config has another model or data section or global
    batch, naming the field; and, when it has checkpoints to resume, another train section
    unless `allow_config_change`. Returns the allowed train changes {key: (saved, now)}."""
    directory = ModelDirectory(model_dir)
    saved = directory.saved_config()
    if saved is None:
        return {}
    current = run_config.to_dict()
    fixed = [(section, key) for section in FIXED_SECTIONS for key in current[section]]
    for section, key in fixed + [("train", key) for key in FIXED_TRAIN_KEYS]:
        value = current[section][key]
        have = (saved.get(section) or {}).get(key)
        if have != value:
            raise UserError(
                f"{model_dir}: holds checkpoints of another run ({section}.{key} is "
                f"{have!r} there but {value!r} now); use a new --model-dir")
    if not directory.checkpoints():
        return {}  # nothing to resume: the run starts over with this config
    # A key missing from an older run_config.yaml had what is now its default.
    have = {**TrainConfig().get_config(), **(saved.get("train") or {})}
    changes = {key: (have[key], value) for key, value in current["train"].items()
               if key not in FREE_TRAIN_KEYS and have.get(key) != value}
    if changes and not allow_config_change:
        listed = ", ".join(f"train.{key} is {old!r} there but {new!r} now"
                           for key, (old, new) in changes.items())
        raise UserError(
            f"{directory.join(RUN_CONFIG_FILE)}: the resumed run's train section changed "
            f"({listed}); pass --allow-config-change to resume with it (the change is kept "
            f"in {RUN_CONFIG_HISTORY_FILE}), or rerun with the saved values")
    return changes


def record_config_change(model_dir, changes, step):
    """Logs a resume's allowed train changes and appends them to the model dir's history."""
    for key, (old, new) in changes.items():
        logger.warning("resuming at step %d with train.%s %r (was %r): --allow-config-change",
                       step, key, new, old)
    ModelDirectory(model_dir).append_config_history(
        {"step": step, "changed": {f"train.{key}": {"was": old, "now": new}
                                   for key, (old, new) in changes.items()}})


def save_run_config(model_dir, run_config, info):
    """Writes the run config, the identity of the dataset the run reads and a copy of its
    tokenizer."""
    directory = ModelDirectory(model_dir)
    directory.write_run_config(run_config)
    directory.write_dataset_identity(info.identity())
    keep_tokenizer(directory, info.tokenizer)


def keep_tokenizer(directory, tokenizer):
    """Copies the dataset's tokenizer (`dataset_info.json`'s path, checked against its sha256)
    into the model dir, so that exports carry it. Skipped, with a log line, when that file
    cannot be read (a dataset moved to another machine, a synthetic test dataset) or is no
    longer the one the dataset was prepared with; an earlier copy is then kept."""
    path, sha256 = tokenizer.get("path"), tokenizer.get("sha256")
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            model_bytes = f.read()
    except Exception as e:  # noqa: BLE001 - any gfile backend error, or no path at all
        logger.info("tokenizer %s not copied into the model dir (%s); exports of this run "
                    "carry no %s", path, str(e).splitlines()[0] if str(e) else type(e).__name__,
                    TOKENIZER_FILE)
        return
    if hashlib.sha256(model_bytes).hexdigest() != sha256:
        logger.warning("tokenizer %s not copied into the model dir: it is not the one the "
                       "dataset was prepared with (sha256 differs from dataset_info.json)", path)
        return
    directory.write_tokenizer(model_bytes)


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
    directory (every worker must take part in a save) that is removed afterwards.

    The checkpoints to resume from are the ckpt-N.index files on disk, not the state file's
    list: a run whose state file was lost or garbled resumes instead of starting over and
    overwriting them. The manager is made once `restore_newest` has read (and the chief
    repaired) the state file, because tf.train.CheckpointManager refuses an empty one.
    """

    def __init__(self, checkpoint, model_dir, keep, step, chief=True, worker=0):
        self.checkpoint = checkpoint
        self.model_dir = model_dir
        self.directory = ModelDirectory(model_dir)
        self.chief = chief
        self._keep = keep
        self._step = step
        self._scratch = None if chief else self.directory.worker_scratch_dir(worker)
        self.manager = None

    @property
    def latest(self):
        return self.directory.latest_checkpoint()

    def restore_newest(self):
        """Restores the newest checkpoint on disk that loads; returns its path, or None for a
        new run. If checkpoint files exist but none loads, the run stops rather than overwrite
        them."""
        found = self.directory.checkpoints()
        listed = self.directory.listed_checkpoints()
        unlisted = [prefix for prefix in found if prefix not in (listed or [])]
        if unlisted:
            state = self.directory.join(CHECKPOINT_STATE_FILE)
            logger.warning("%s: %s; resuming from the checkpoints on disk (newest %s)", state,
                           "is missing or unreadable" if listed is None else
                           f"does not list {', '.join(p.rsplit('/', 1)[-1] for p in unlisted)}",
                           found[-1])
        path = restore_newest(self.checkpoint, found, logger)
        if path is None and self.directory.has_checkpoint_files():
            raise UserError(
                f"{self.model_dir}: holds {CHECKPOINT_NAME}-* files but no checkpoint there "
                "loads into this model; use a new --model-dir (or move those files away to "
                "start over)")
        if self.chief and (unlisted or listed is None):
            self._repair_state(found, path)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._scratch or self.model_dir, max_to_keep=self._keep,
            step_counter=self._step)
        return path

    def _repair_state(self, found, restored):
        """Makes the state file list the checkpoints on disk up to the restored one. The
        manager deletes only what it lists, so the found ones would otherwise be kept forever,
        past train.keep_checkpoints; and it refuses an empty state file."""
        if restored is not None:
            self.directory.write_checkpoint_state(
                [p for p in found if checkpoint_step(p) <= checkpoint_step(restored)])
        elif self.directory.has(CHECKPOINT_STATE_FILE):  # no checkpoint files: nothing lost
            logger.warning("%s: unreadable and no checkpoint beside it; removed",
                           self.directory.join(CHECKPOINT_STATE_FILE))
            tf.io.gfile.remove(self.directory.join(CHECKPOINT_STATE_FILE))

    def save(self, step):
        """Saves ckpt-`step` (its memory shards are written before, see
        pretrain/memory_state.py); the chief then removes the memory of the checkpoints the
        manager swept."""
        path = self.manager.save(checkpoint_number=step)
        if self._scratch and tf.io.gfile.exists(self._scratch):
            tf.io.gfile.rmtree(self._scratch)
        if self.chief:
            remove_swept(self.directory, step)
        return path
