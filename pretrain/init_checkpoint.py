"""`--init-checkpoint`: the weights of an original-format checkpoint (a released XLNet model or
`xlnet export --format original-tf`) as the start of a new pretraining run.

Everything is read and checked before the trainer writes anything: the variables against the
run's model config (by `read_original_checkpoint`), the vocabulary against `model.n_token` (the
dataset's tokenizer), and a `spiece.model` beside the checkpoint against the dataset's.
"""

import hashlib
import logging
import os

import tensorflow as tf

from xlnet.errors import UserError
from xlnet.formats.original_checkpoint import LM_BIAS, checkpoint_prefix, read_original_checkpoint
from xlnet.tokenizer import TOKENIZER_FILE

logger = logging.getLogger(__name__)


def read_init_checkpoint(path, run_config, dataset_info):
    """(checkpoint prefix, {original name: float32 array}) fitting the run and its dataset."""
    prefix = checkpoint_prefix(path)
    model = run_config.model
    try:
        arrays = read_original_checkpoint(prefix, model)
    except UserError as e:
        _check_vocabulary(prefix, model)  # when the vocabulary differs, say that first
        raise UserError(f"--init-checkpoint {e}") from None
    _check_tokenizer(prefix, dataset_info)
    return prefix, arrays


def _check_vocabulary(prefix, model):
    try:
        shape = dict(tf.train.list_variables(prefix)).get(LM_BIAS)
    except Exception:  # noqa: BLE001 - unreadable: read_original_checkpoint's refusal says so
        return
    if shape and len(shape) == 1 and shape[0] != model.n_token:
        raise UserError(
            f"--init-checkpoint {prefix}: the checkpoint's vocabulary has {shape[0]} tokens "
            f"({LM_BIAS}) but model.n_token is {model.n_token}, the dataset's tokenizer; "
            f"prepare the data with the checkpoint's {TOKENIZER_FILE} and set model.n_token: "
            f"{shape[0]}")


def _check_tokenizer(prefix, dataset_info):
    """A tokenizer shipped beside the checkpoint must be the one the dataset was cut with."""
    path = os.path.join(os.path.dirname(prefix), TOKENIZER_FILE)
    if not tf.io.gfile.exists(path):
        logger.info("no %s beside %s: the vocabulary size matches, the pieces are not checked",
                    TOKENIZER_FILE, prefix)
        return
    with tf.io.gfile.GFile(path, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    expected = dataset_info.tokenizer.get("sha256")
    if sha256 != expected:
        raise UserError(
            f"--init-checkpoint {prefix}: {path} is not the tokenizer the dataset was prepared "
            f"with (sha256 {sha256[:12]}… there, {str(expected)[:12]}… in dataset_info.json); "
            f"prepare the data with {path}")
