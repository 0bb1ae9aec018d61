"""Export (`xlnet export`): hand trained weights to other tools.

  original-tf   xlnet_model.ckpt.* + xlnet_config.json with the original TF1 variable names:
                the original scripts (--init_checkpoint), keras-xlnet and HF's converter read it
  hf            config.json + model.safetensors for transformers' XLNetLMHeadModel
  saved-model   a TF SavedModel with serving signatures, for TF Serving

`--model-dir` is a trainer's model directory (run_config.yaml + checkpoints) or a directory in
the released layout (xlnet_config.json + xlnet_model.ckpt.*).
"""

import logging
import os
import shutil
import tempfile
import time

from xlnet.atomic_file import umask_mode
from xlnet.config.model_config import XLNetConfig
from xlnet.errors import UserError
from xlnet.formats.hf_export import write_hf
from xlnet.formats.model_dir import RUN_CONFIG_FILE, ModelDirectory, restore_model_weights
from xlnet.formats.original_checkpoint import (CONFIG_NAME, checkpoint_prefix, model_arrays,
                                               read_original_checkpoint,
                                               write_original_checkpoint)
from xlnet.formats.saved_model import write_saved_model
from xlnet.progress import Progress, megabytes
from xlnet.tokenizer import TOKENIZER_FILE

logger = logging.getLogger(__name__)

FORMATS = ("original-tf", "hf", "saved-model")
RELEASED_SEQ_LEN, RELEASED_NUM_PREDICT = 512, 85


def load_weights(model_dir, checkpoint=None):
    """(XLNetConfig, DataConfig or None, {original name: array}) from a trainer's or an
    original model directory."""
    directory = ModelDirectory(model_dir)
    if not directory.is_directory():
        raise UserError(f"--model-dir {model_dir}: no such directory")
    if directory.holds_run():
        return _load_trainer_weights(directory, checkpoint)
    if directory.has(CONFIG_NAME):
        prefix = checkpoint_prefix(checkpoint or model_dir)
        directory.check_inside([directory.join(CONFIG_NAME), *_checkpoint_files(prefix)])
        config = XLNetConfig.from_json(directory.join(CONFIG_NAME))
        return config, None, read_original_checkpoint(prefix, config)
    raise UserError(f"--model-dir {model_dir}: holds neither {RUN_CONFIG_FILE} (a trainer's "
                    f"model directory) nor {CONFIG_NAME} (an original checkpoint directory)")


def _load_trainer_weights(directory, checkpoint):
    from xlnet.model.xlnet_lm import XLNetLM

    prefix = checkpoint or directory.latest_checkpoint()
    if not prefix:
        raise UserError(f"--model-dir {directory.path}: no checkpoint yet (train first, or "
                        "pass --checkpoint)")
    directory.check_inside([directory.join(RUN_CONFIG_FILE), *_checkpoint_files(prefix)])
    run_config = directory.run_config()
    config = run_config.model
    model = XLNetLM(config)
    restore_model_weights(model, prefix)
    logger.info("restored %s", prefix)
    return config, run_config.data, model_arrays(model)


def _checkpoint_files(prefix):
    import tensorflow as tf

    return tf.io.gfile.glob(f"{prefix}.*")


def _given_or(value, default):
    return default if value is None else value


def export(model_dir, fmt, output, checkpoint=None, seq_len=None, num_predict=None):
    """Writes `output` (a new directory) in format `fmt`; it appears only when complete. On
    an object store (a URL) it is staged locally, then uploaded file by file (see _upload).

    `seq_len`/`num_predict` fix the SavedModel's shapes (default: the run's data section, or
    the released 512/85)."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown (use one of {', '.join(FORMATS)})")
    for flag, value in (("--seq-len", seq_len), ("--num-predict", num_predict)):
        if value is not None and value <= 0:
            raise UserError(f"{flag} {value}: must be positive (or leave it out for the "
                            "run's value)")
    import tensorflow as tf

    remote = "://" in output  # an object store URL (gs://): staged here, then uploaded
    output = output.rstrip("/") if remote else os.path.abspath(output)
    if tf.io.gfile.exists(output) and (not tf.io.gfile.isdir(output)
                                       or tf.io.gfile.listdir(output)):
        raise UserError(f"--output {output}: exists and is not empty; choose a new directory")
    source = ModelDirectory(model_dir)
    copies_tokenizer = fmt != "saved-model" and source.has(TOKENIZER_FILE)
    if copies_tokenizer:
        source.check_inside([source.tokenizer_path])
    started = time.monotonic()
    config, data, arrays = load_weights(model_dir, checkpoint)
    logger.info("read %d tensors (%s) in %.1f s", len(arrays),
                megabytes(sum(a.nbytes for a in arrays.values())), time.monotonic() - started)
    parent = tempfile.mkdtemp(prefix="xlnet-export-") if remote else os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.partial-", dir=parent)
    # mkdtemp makes it private; it becomes the output, which gets what mkdir would give.
    os.chmod(staging, umask_mode(0o777))
    try:
        if fmt == "original-tf":
            write_original_checkpoint(arrays, config, staging)
        elif fmt == "hf":
            write_hf(arrays, config, staging)
        else:
            write_saved_model(arrays, config, staging,
                              _given_or(seq_len, data.seq_len if data else RELEASED_SEQ_LEN),
                              _given_or(num_predict,
                                        data.num_predict if data else RELEASED_NUM_PREDICT))
        if copies_tokenizer:
            # The released layout and transformers' XLNetTokenizer keep it beside the weights.
            # Written with open(), not tf.io.gfile.copy, which creates files 0o644 whatever
            # the umask.
            with open(os.path.join(staging, TOKENIZER_FILE), "wb") as f:
                f.write(source.read_tokenizer())
        files = _files(staging)
        logger.info("wrote %s: %d files, %s in %.1f s", fmt, len(files),
                    megabytes(sum(os.path.getsize(os.path.join(staging, f)) for f in files)),
                    time.monotonic() - started)
        if remote:
            _upload(staging, files, output)
        else:
            os.replace(staging, output)
    finally:
        shutil.rmtree(parent if remote else staging, ignore_errors=True)
    logger.info("exported %s (%s) to %s", model_dir, fmt, output)
    return output


# The files that name or describe the others: uploaded last, so that an export cut short on an
# object store (which has no rename of a directory) lacks them and is not taken for whole.
_DESCRIBING_FILES = ("checkpoint", CONFIG_NAME, "config.json", "saved_model.pb")


def _files(staging):
    """The staged export's files, relative to it."""
    return [os.path.relpath(os.path.join(folder, name), staging)
            for folder, _, names in os.walk(staging) for name in names]


def _upload(staging, files, output):
    """Copies the staged export to `output` on an object store, one whole object per file:
    the weights first, the describing files last."""
    import tensorflow as tf

    for folder, subfolders, names in os.walk(staging):
        if not names and not subfolders:  # e.g. a SavedModel's empty assets/
            tf.io.gfile.makedirs(f"{output}/{os.path.relpath(folder, staging)}")
    sizes = {relative: os.path.getsize(os.path.join(staging, relative)) for relative in files}
    with Progress(logger, f"uploading to {output}", total=sum(sizes.values()),
                  describe=megabytes) as progress:
        done = 0
        for relative in sorted(files, key=lambda r: (os.path.basename(r) in _DESCRIBING_FILES,
                                                     r)):
            tf.io.gfile.copy(os.path.join(staging, relative),
                             f"{output}/{relative.replace(os.sep, '/')}", overwrite=True)
            done += sizes[relative]
            progress.update(done, relative)
