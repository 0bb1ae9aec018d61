"""Pretraining (`xlnet pretrain`): train XLNet from a prepared dataset, resuming from the model
directory."""

import logging

from xlnet.config.run_config import load_run_config
from xlnet.errors import UserError
from xlnet.output_paths import (check_dataset_directory, check_output_directory,
                                translate_filesystem_errors)

logger = logging.getLogger(__name__)


def pretrain(config, data_dir, model_dir, overrides=(), tpu=None, init_checkpoint=None,
             profile_steps=None, verify_data=False, allow_config_change=False,
             memory_check=True):
    """Trains to `train.steps`, resuming from the newest good checkpoint in `model_dir`.

    `config` names a run config or is a path, `overrides` are `section.key=value` strings,
    `tpu` names the TPU of `train.strategy: tpu`, `init_checkpoint` is an original-format
    checkpoint whose weights start a new run, `profile_steps` (A, B) writes a TensorBoard
    profile of steps A to B, `verify_data` checks every stream file's crc32c and record count
    (done anyway on a model directory's first run on the dataset), `allow_config_change`
    resumes although the train section changed (the change is recorded in the model dir),
    `memory_check=False` starts although pretrain/plan.py's estimate of the step's memory
    exceeds the machine's (pretrain/memory_check.py).
    Returns 0, or 143 after a SIGTERM (a checkpoint was saved).
    """
    run_config = load_run_config(config, overrides)
    check_dataset_directory(data_dir)
    check_output_directory(model_dir, "--model-dir")
    if profile_steps is not None and not 0 < profile_steps[0] <= profile_steps[1]:
        raise UserError(f"--profile-steps {profile_steps[0]},{profile_steps[1]}: "
                        "need 0 < A <= B")
    if run_config.train.strategy == "multi_worker":
        from pretrain.cluster import check_cluster_environment
        check_cluster_environment()  # TF_CONFIG errors before TensorFlow is imported
    # The strategy comes first: multi-worker setup must precede any other TF work.
    from pretrain.distribution import create_strategy, is_chief
    strategy = create_strategy(run_config.train.strategy, tpu=tpu,
                               cluster_timeout=run_config.train.cluster_timeout)
    if memory_check:
        from pretrain.memory_check import check_memory, local_devices
        check_memory(run_config, *local_devices(strategy))
    if is_chief(strategy):
        # Refused before the model is built; the trainer takes the lock before it writes.
        from pretrain.run_lock import RunLock
        RunLock(model_dir).check_free()
    from pretrain.trainer import Trainer
    logger.info("strategy %s with %d replica(s)", type(strategy).__name__,
                strategy.num_replicas_in_sync)
    with translate_filesystem_errors("--model-dir", model_dir):
        trainer = Trainer(run_config, data_dir, model_dir, strategy, profile_steps,
                          init_checkpoint, verify_data, allow_config_change)
        return trainer.train()
