"""Runs the trainer and records, per step, what each global row read and the memory it carries.

In-process: `record_run(...)`. As a script (for several logical CPU replicas, which must be set
up before TensorFlow starts): `python tests/pretrain_harness.py SPEC.json OUT.npz`, where SPEC
is {"replicas": n, "data": dir, "phases": [{"model_dir": d, "overrides": [...]}, ...]}; the
records of phase i are saved as `{i}/{name}` arrays.
"""

import json
import logging
import os
import sys

import numpy as np


def gather(strategy, per_replica, axis=0):
    """A per-replica value as one tensor in global row order (a collective)."""
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1:
        return tf.convert_to_tensor(strategy.experimental_local_results(per_replica)[0])
    return strategy.gather(per_replica, axis=axis)


def record_run(data_dir, model_dir, overrides, strategy=None):
    """Trains (resuming from model_dir, with whatever train changes the phases make); returns
    {memory, stream, index, loss} per step."""
    import tensorflow as tf

    from pretrain.trainer import Trainer
    from xlnet import load_run_config

    strategy = strategy or tf.distribute.get_strategy()
    trainer = Trainer(load_run_config("tiny", overrides), data_dir, model_dir, strategy,
                      allow_config_change=True)
    records = {"memory": [], "stream": [], "index": [], "loss": [], "step": []}

    def on_step(trainer, step, batch, metrics, memory):
        records["memory"].append(gather(trainer.strategy, memory).numpy())  # [G, N, M, D]
        for name in ("stream", "index"):
            # [A, b] per replica -> [A, G] in global row order; the last micro-step.
            records[name].append(gather(trainer.strategy, batch[name], axis=1).numpy()[-1])
        records["loss"].append(metrics["loss"])
        records["step"].append(step)

    trainer.train(on_step=on_step)
    return {name: np.array(values) for name, values in records.items()}


def _main(spec_path, out_path):
    with open(spec_path) as f:
        spec = json.load(f)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * spec["replicas"])
    from pretrain.distribution import create_strategy

    strategy = create_strategy("mirrored")
    assert strategy.num_replicas_in_sync == spec["replicas"]
    arrays = {}
    for i, phase in enumerate(spec["phases"]):
        for name, value in record_run(spec["data"], phase["model_dir"], phase["overrides"],
                                      strategy).items():
            arrays[f"{i}/{name}"] = value
    np.savez(out_path, **arrays)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    _main(*sys.argv[1:3])
