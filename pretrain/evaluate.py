"""Scoring a model on a prepared dataset (`xlnet evaluate`): a run's newest checkpoint or an
original-format checkpoint, with and without memory (pretrain/evaluator.py), into eval.json."""

import logging
import math

from pretrain.dataset_check import check_dataset
from pretrain.evaluator import Evaluator
from pretrain.init_checkpoint import read_init_checkpoint
from pretrain.input_pipeline import load_dataset_info
from xlnet import schema
from xlnet.atomic_file import write_file
from xlnet.config.run_config import load_run_config
from xlnet.errors import UserError
from xlnet.formats.model_dir import EVAL_FILE, ModelDirectory, eval_json, restore_model_weights
from xlnet.formats.original_checkpoint import assign_to_model
from xlnet.output_paths import check_dataset_directory

logger = logging.getLogger(__name__)


def _model_and_config(model_dir, init_checkpoint, config, overrides, data_dir):
    """(run config, dataset info, a function building the model with its weights, where the
    weights come from); everything is read and checked before a model is built."""
    from xlnet.model.xlnet_lm import XLNetLM

    if (model_dir is None) == (init_checkpoint is None):
        raise UserError("evaluate: give --model-dir (a run's newest checkpoint) or "
                        "--init-checkpoint (an original-format checkpoint), not both")
    if model_dir is not None:
        directory = ModelDirectory(model_dir)
        if not directory.holds_run():
            raise UserError(f"--model-dir {model_dir}: not a trainer's model directory (no "
                            "run_config.yaml); for a released model use --init-checkpoint")
        run_config = directory.run_config(overrides)
        prefix = directory.latest_checkpoint()
        if not prefix:
            raise UserError(f"--model-dir {model_dir}: no checkpoint yet (train first)")
        info = load_dataset_info(data_dir, run_config)

        def build():
            model = XLNetLM(run_config.model)
            restore_model_weights(model, prefix)
            return model
        return run_config, info, build, prefix
    if config is None:
        raise UserError("--init-checkpoint: give --config too (the run config whose model "
                        "section describes the checkpoint and whose data section the dataset's)")
    run_config = load_run_config(config, overrides)
    info = load_dataset_info(data_dir, run_config)
    prefix, arrays = read_init_checkpoint(init_checkpoint, run_config, info)

    def build():
        model = XLNetLM(run_config.model)
        assign_to_model(model, arrays, run_config.model, prefix)
        return model
    return run_config, info, build, prefix


def evaluate(data_dir, model_dir=None, init_checkpoint=None, config=None, overrides=(),
             split=schema.EVAL, max_segments=None, output=None, verify_data=False,
             memory_check=True):
    """Scores `split` of the dataset in `data_dir`; writes eval.json (into `model_dir`, or to
    `output`) and returns its content.

    The weights are `model_dir`'s newest checkpoint, or the original-format checkpoint
    `init_checkpoint` described by the run config `config`. Every row reads its streams from
    their start with fresh memory; `max_segments` bounds the segments scored (rounded up to
    whole batches), else each row reads the split's first epoch. The split's stream files
    are checked first (pretrain/dataset_check.py), with their checksums if `verify_data`.
    `memory_check=False` builds the model although its estimated memory exceeds the machine's.
    """
    import tensorflow as tf

    check_dataset_directory(data_dir)
    if split not in schema.SPLITS:
        raise UserError(f"--split {split}: use one of {', '.join(schema.SPLITS)}")
    if max_segments is not None and max_segments <= 0:
        raise UserError(f"--max-segments: must be positive, got {max_segments}")
    if output is None and model_dir is None:
        raise UserError("--init-checkpoint: give --output FILE for eval.json (there is no "
                        "model directory to write it into)")
    run_config, info, build_model, prefix = _model_and_config(
        model_dir, init_checkpoint, config, overrides, data_dir)
    strategy = tf.distribute.get_strategy()
    if memory_check:
        from pretrain.memory_check import check_memory, local_devices
        check_memory(run_config, *local_devices(strategy), evaluation=True)
    check_dataset(info, data_dir, [split], checksums=verify_data)
    per_row = (math.ceil(max_segments / run_config.train.global_batch_size)
               if max_segments else None)
    model = build_model()
    evaluator = Evaluator(strategy, model, info, data_dir, run_config, split, per_row)
    logger.info("evaluating %s on the %s split of %s: %d segments per row, %d rows", prefix,
                split, data_dir, evaluator.steps, run_config.train.global_batch_size)
    results = {"checkpoint": prefix, "data": data_dir, "split": split,
               **evaluator.evaluate()}
    destination = output or ModelDirectory(model_dir).join(EVAL_FILE)
    write_file(destination, eval_json(results))
    logger.info("wrote %s", destination)
    return results
