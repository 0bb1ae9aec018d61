"""The model directory contract between `xlnet pretrain` (writer) and whatever reads a run: a
resume, `xlnet export`, evaluation. The names and the checkpoint structure are spelled only
here, and the directory is read and written only through tf.io.gfile (local, gs://, s3://).

Layout of a model directory:
  run_config.yaml         the run's RunConfig (model, data, train sections)
  run_config.history.yaml the train changes resumes made (--allow-config-change): at which
                          step, each key's old and new value; appended, never rewritten
  dataset.json            identity of the dataset the data position counts in
  init_checkpoint.json    the original-format checkpoint a new run took its weights from
  spiece.model            the tokenizer, when present (exports copy it beside the weights)
  checkpoint, ckpt-N.*    tf.train checkpoints of `training_checkpoint` below; `checkpoint`
                          is tf.train's state file, but a checkpoint counts when its
                          ckpt-N.index is on disk, listed there or not (`checkpoints()`)
  memory/ckpt-N/          the recurrent memory of checkpoint ckpt-N, sharded by canonical row:
                          `rows-AAAAAA-BBBBBB` (rows [A, B) as raw little-endian float32, each
                          [N, M, D], written by the worker owning them) and `manifest.json`
                          (pretrain/memory_shards.py); ckpt-N counts only with all of them
  .worker-K/              a non-chief worker's scratch checkpoint, removed after each save
  train/                  TensorBoard logs of training: `lm/loss|perplexity|accuracy` and
                          `train/<name>` (learning rate, gradient norm, throughput, ...)
  eval/, eval_no_memory/  TensorBoard logs of evaluation, with and without memory: the same
                          `lm/...` tags, so train and eval share charts; `eval/memory_gain`
  eval.json               the latest evaluation (`xlnet evaluate`, or the trainer's)
  profile/                a `--profile-steps` trace
  LOCK                    held by the `xlnet pretrain` writing here: pid, host, since
                          (pretrain/run_lock.py)
"""

import datetime
import json
import os
import re

import yaml

from xlnet.config.run_config import run_config_from_yaml
from xlnet.errors import UserError
from xlnet.schema import join_path
from xlnet.tokenizer import TOKENIZER_FILE

RUN_CONFIG_FILE = "run_config.yaml"
RUN_CONFIG_HISTORY_FILE = "run_config.history.yaml"
DATASET_FILE = "dataset.json"
INIT_CHECKPOINT_FILE = "init_checkpoint.json"
EVAL_FILE = "eval.json"
TRAIN_LOG_DIR = "train"
EVAL_LOG_DIR = "eval"
EVAL_NO_MEMORY_LOG_DIR = "eval_no_memory"
PROFILE_DIR = "profile"
LOCK_FILE = "LOCK"
CHECKPOINT_NAME = "ckpt"  # tf.train.CheckpointManager's default: ckpt-N.index, ckpt-N.data-*
CHECKPOINT_STATE_FILE = "checkpoint"  # tf.train's list of the checkpoints, newest last
MEMORY_DIR = "memory"  # memory/ckpt-N/: the memory shards of ckpt-N and their manifest
MEMORY_MANIFEST_FILE = "manifest.json"
LM_METRICS = ("loss", "perplexity", "accuracy")  # tagged alike in the train and eval runs


def lm_tag(name):
    """Tag of a language-model metric (LM_METRICS), shared by the train and eval runs."""
    return f"lm/{name}"


def train_scalar_tag(name):
    """Tag of a training-only scalar (learning rate, gradient norm, throughput, ...)."""
    return f"train/{name}"


def eval_scalar_tag(name):
    return f"eval/{name}"


def data_scalar_tag(name):
    """Tag of what the dataset holds (stats.json), written once at a run's start."""
    return f"data/{name}"


def eval_json(results):
    """eval.json's text: an evaluation's metrics (pretrain/evaluator.py) and where they come
    from."""
    return json.dumps(results, indent=2, sort_keys=True) + "\n"


def model_weights(model):
    """The model's variables keyed by their original TF1 names: the checkpoints' `model`.

    Keras 3 layers kept in Python lists are invisible to tf.train.Checkpoint, so the model
    object itself would save only its top-level weights; the original names cover them all.
    """
    weights = dict(model.original_variables())
    named = {id(v) for v in weights.values()}
    missing = [v.path for v in model.weights if id(v) not in named]
    if missing:
        raise RuntimeError(f"variables without an original name: {missing}")
    return weights


def training_checkpoint(model, optimizer, step, data_position):
    """The objects of a `ckpt-N`: weights, optimizer slots, step and data position (micro-steps
    consumed). The rows' memory is beside it, sharded, in `memory/ckpt-N/`
    (`ModelDirectory.memory_dir`); checkpoints written before the shards existed hold it as
    `memory` ([global_batch, N, M, D], canonical row order), still read on resume."""
    import tensorflow as tf

    return tf.train.Checkpoint(model=model_weights(model), optimizer=optimizer, step=step,
                               data_position=data_position)


LEGACY_MEMORY_KEY = "memory/.ATTRIBUTES/VARIABLE_VALUE"  # the memory inside an older ckpt-N


def restore_model_weights(model, prefix):
    """Restores only the weights of a `ckpt-N` into `model` (an XLNetLM)."""
    import tensorflow as tf

    try:
        tf.train.Checkpoint(model=model_weights(model)).restore(
            prefix).expect_partial().assert_existing_objects_matched()
    except Exception as e:  # noqa: BLE001 - a damaged checkpoint raises many kinds of errors
        raise UserError(f"{prefix}: cannot restore the model from this checkpoint "
                        f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def restore_newest(checkpoint, prefixes, logger):
    """Restores the newest of `prefixes` (oldest first) that loads into `checkpoint`; returns
    its prefix, or None when there are none. A damaged checkpoint (e.g. truncated by a crash
    during the save) is skipped with a warning; when none loads, nothing is restored."""
    for prefix in reversed(prefixes):
        try:
            checkpoint.restore(prefix).assert_existing_objects_matched()
        except Exception as e:  # a truncated data file raises IndexError, not a TF error
            logger.warning("checkpoint %s does not load (%s); trying the previous one", prefix,
                           str(e).splitlines()[0] if str(e) else type(e).__name__)
            continue
        return prefix
    return None


def checkpoint_step(prefix):
    """N of a `.../ckpt-N` prefix, or None for another name."""
    found = re.fullmatch(rf"{CHECKPOINT_NAME}-(\d+)", prefix.rsplit("/", 1)[-1])
    return int(found.group(1)) if found else None


class ModelDirectory:
    """One model directory; every file of the contract is read and written here."""

    def __init__(self, path):
        self.path = path

    def join(self, *names):
        return join_path(self.path, *names)

    @property
    def tokenizer_path(self):
        return self.join(TOKENIZER_FILE)

    @property
    def train_log_dir(self):
        return self.join(TRAIN_LOG_DIR)

    @property
    def eval_log_dir(self):
        return self.join(EVAL_LOG_DIR)

    @property
    def eval_no_memory_log_dir(self):
        return self.join(EVAL_NO_MEMORY_LOG_DIR)

    @property
    def profile_dir(self):
        return self.join(PROFILE_DIR)

    def memory_dir(self, step):
        """Where the memory shards of ckpt-`step` and their manifest are."""
        return self.join(MEMORY_DIR, f"{CHECKPOINT_NAME}-{step}")

    def memory_manifest_path(self, step):
        return self.join(MEMORY_DIR, f"{CHECKPOINT_NAME}-{step}", MEMORY_MANIFEST_FILE)

    @staticmethod
    def memory_shard_file(step, start, stop):
        """The model-dir-relative name of the shard holding canonical rows [start, stop)."""
        return f"{MEMORY_DIR}/{CHECKPOINT_NAME}-{step}/rows-{start:06d}-{stop:06d}"

    def memory_steps(self):
        """The N of every memory/ckpt-N directory here (complete or not), ascending."""
        import tensorflow as tf

        if not tf.io.gfile.isdir(self.join(MEMORY_DIR)):
            return []
        steps = [checkpoint_step(name.rstrip("/"))
                 for name in tf.io.gfile.listdir(self.join(MEMORY_DIR))]
        return sorted(step for step in steps if step is not None)

    def worker_scratch_dir(self, worker):
        return self.join(f".worker-{worker}")

    def has(self, name):
        import tensorflow as tf

        return tf.io.gfile.exists(self.join(name))

    def is_directory(self):
        import tensorflow as tf

        return tf.io.gfile.isdir(self.path)

    def holds_run(self):
        """Whether a trainer has written its run config here."""
        return self.has(RUN_CONFIG_FILE)

    def checkpoint_prefix(self, step):
        return self.join(f"{CHECKPOINT_NAME}-{step}")

    def checkpoints(self):
        """The prefixes of every `ckpt-N.index` here, oldest first. The files, not the state
        file, are what counts: a lost, garbled or stale state file (a crash, a copied
        directory) must not hide a checkpoint from a resume, which would then overwrite it."""
        import tensorflow as tf

        steps = [checkpoint_step(path[:-len(".index")])
                 for path in tf.io.gfile.glob(self.join(f"{CHECKPOINT_NAME}-*.index"))]
        return [self.checkpoint_prefix(step) for step in sorted(s for s in steps if s is not None)]

    def listed_checkpoints(self):
        """The prefixes the state file lists, oldest first; None when it is missing, empty or
        unreadable (tf.train then ignores it, or raises for an empty one)."""
        import tensorflow as tf

        try:
            state = tf.train.get_checkpoint_state(self.path)
        except Exception:  # noqa: BLE001 - an empty file raises ValueError, a gfile error others
            return None
        if state is None or not state.model_checkpoint_path:
            return None
        # tf.train makes the manager's relative names absolute its own way: compare by step.
        steps = [checkpoint_step(path) for path in
                 state.all_model_checkpoint_paths or [state.model_checkpoint_path]]
        return [self.checkpoint_prefix(step) for step in steps if step is not None]

    def has_checkpoint_files(self):
        """Whether any ckpt-* file is here, even one without its index (a save cut short)."""
        import tensorflow as tf

        return bool(tf.io.gfile.glob(self.join(f"{CHECKPOINT_NAME}-*")))

    def write_checkpoint_state(self, prefixes):
        """Rewrites the state file to list `prefixes` (oldest first, the last one the latest)
        as tf.train.CheckpointManager writes it, replaced whole (atomic rename). Each one's
        time is its index file's: the manager deletes, past max_to_keep, only checkpoints
        newer than the state's last preserved time."""
        import tensorflow as tf

        times = [tf.io.gfile.stat(f"{prefix}.index").mtime_nsec / 1e9 for prefix in prefixes]
        tf.compat.v1.train.update_checkpoint_state(
            self.path, prefixes[-1], all_model_checkpoint_paths=prefixes,
            all_model_checkpoint_timestamps=times, last_preserved_timestamp=min(times) - 1)

    def latest_checkpoint(self):
        """The newest checkpoint on disk, or None."""
        found = self.checkpoints()
        return found[-1] if found else None

    def _read_text(self, name):
        import tensorflow as tf

        with tf.io.gfile.GFile(self.join(name), "rb") as f:
            return f.read().decode("utf-8")

    def _write(self, name, data):
        """Writes text or bytes as `name`, whole (atomic_file)."""
        import tensorflow as tf

        from xlnet.atomic_file import write_file

        tf.io.gfile.makedirs(self.path)
        write_file(self.join(name), data)

    def saved_config(self):
        """The saved run config as a plain mapping, or None in a directory without one."""
        if not self.holds_run():
            return None
        return yaml.safe_load(self._read_text(RUN_CONFIG_FILE)) or {}

    def run_config(self, overrides=()):
        """The saved RunConfig (validated), with `section.key=value` overrides."""
        return run_config_from_yaml(self._read_text(RUN_CONFIG_FILE),
                                    source=self.join(RUN_CONFIG_FILE), overrides=overrides)

    def write_run_config(self, run_config):
        self._write(RUN_CONFIG_FILE, run_config.to_yaml())

    def config_history(self):
        """The entries of run_config.history.yaml, oldest first ([] without one)."""
        if not self.has(RUN_CONFIG_HISTORY_FILE):
            return []
        return yaml.safe_load(self._read_text(RUN_CONFIG_HISTORY_FILE)) or []

    def append_config_history(self, entry):
        """Appends `entry` (a mapping) with the time, rewriting the file whole."""
        entry = {"time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                 **entry}
        self._write(RUN_CONFIG_HISTORY_FILE,
                         yaml.safe_dump(self.config_history() + [entry], sort_keys=False))

    def dataset_identity(self):
        """What dataset.json records, or None."""
        return json.loads(self._read_text(DATASET_FILE)) if self.has(DATASET_FILE) else None

    def write_dataset_identity(self, identity):
        self._write(DATASET_FILE, json.dumps(identity, indent=2, sort_keys=True) + "\n")

    def read_tokenizer(self):
        import tensorflow as tf

        with tf.io.gfile.GFile(self.tokenizer_path, "rb") as f:
            return f.read()

    def write_tokenizer(self, model_bytes):
        self._write(TOKENIZER_FILE, model_bytes)

    def check_inside(self, paths):
        """Refuses a file among `paths` named inside this directory that is a symbolic link (or
        lies under one) leading out of it: an export copies what it reads beside the weights,
        so a link to a private file would publish it. Object stores have no links."""
        if "://" in self.path:
            return
        root = os.path.realpath(self.path)
        named_root = os.path.abspath(self.path)
        for path in paths:
            if os.path.commonpath([named_root, os.path.abspath(path)]) != named_root:
                continue  # named outside by the user (--checkpoint), not planted here
            target = os.path.realpath(path)
            if os.path.commonpath([root, target]) != root:
                raise UserError(f"{path}: a link to {target}, outside {self.path}; only files "
                                "inside the model directory are read (replace the link by a "
                                "copy of the file)")

    def read_eval(self):
        """The latest evaluation (eval.json), or None."""
        return json.loads(self._read_text(EVAL_FILE)) if self.has(EVAL_FILE) else None

    def write_eval(self, results):
        self._write(EVAL_FILE, eval_json(results))

    def write_init_checkpoint(self, prefix, variables):
        """Records which original checkpoint a run started from (its step 0 weights)."""
        absolute = prefix if "://" in prefix else os.path.abspath(prefix)
        record = {"prefix": absolute, "variables": variables}
        self._write(INIT_CHECKPOINT_FILE,
                         json.dumps(record, indent=2, sort_keys=True) + "\n")
