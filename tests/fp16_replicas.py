"""mixed_float16 on two MirroredStrategy replicas (logical CPUs) where only replica 1's
gradients overflow while the loss scale is >= 2**14: writes per-step records and whether the
replicas' copies of the variables still agree. `python tests/fp16_replicas.py DATA MODEL_DIR
OUT.json` (logical devices must be set up before TensorFlow starts, hence a script).

The overflow is put into replica 1's gradients by the trainer's own forward-backward method
(a subclass, below): real overflows cannot be aimed at one replica, and the point is what the
step does with them.
"""

import json
import os
import sys


def main(data_dir, model_dir, out_path):
    import numpy as np
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0],
                                               [tf.config.LogicalDeviceConfiguration()] * 2)
    from pretrain.distribution import create_strategy
    from pretrain.trainer import Trainer
    from xlnet import load_run_config

    class ReplicaOneOverflows(Trainer):
        def _gradients(self, batch, memory, seed, loss_scale=None):
            *rest, grads = super()._gradients(batch, memory, seed, loss_scale)
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            scale = loss_scale * self._loss_scale_divisor
            overflow = tf.logical_and(tf.equal(replica, 1), scale >= 2.0 ** 14)
            grads[0] = grads[0] + tf.where(overflow, np.inf, 0.0)
            return (*rest, grads)

    strategy = create_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    config = load_run_config("tiny", ["train.precision=mixed_float16", "train.steps=6",
                                      "train.warmup_steps=1", "train.log_every=1"])
    trainer = ReplicaOneOverflows(config, data_dir, model_dir, strategy)
    initial = [v.numpy() for v in trainer.model.trainable_variables]
    records = {"loss": [], "loss_scale": [], "skipped": []}

    def on_step(trainer, step, batch, metrics, memory):
        for name in records:
            records[name].append(metrics[name])

    assert trainer.train(on_step=on_step) == 0
    def copies(variable):  # each replica's copy of a (Keras-wrapped) mirrored variable
        return [v.numpy() for v in strategy.experimental_local_results(variable.value)]

    differ = []
    for variable in trainer.model.trainable_variables + list(trainer.optimizer.variables):
        values = copies(variable)
        if len(values) != 2 or not np.array_equal(values[0], values[1]):
            differ.append(variable.path)
    records["copies_differ"] = differ
    records["iterations"] = [int(v) for v in copies(trainer.optimizer.iterations)]
    records["scale_copies"] = [[float(v.numpy()) for v in strategy.experimental_local_results(
        variable)] for variable in (trainer.loss_scale.scale, trainer.loss_scale.good_steps)]
    records["variables_changed"] = any(
        not np.array_equal(v.numpy(), before)
        for before, v in zip(initial, trainer.model.trainable_variables))
    with open(out_path, "w") as f:
        json.dump(records, f)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main(*sys.argv[1:4])
