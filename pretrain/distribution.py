"""The tf.distribute strategy named by the config or `--strategy`."""

import json
import os

import tensorflow as tf

from xlnet.errors import UserError


def create_strategy(name, tpu=None):
    """Returns the strategy; `multi_worker` reads TF_CONFIG, or the Slurm environment."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(_local_devices())
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=_cluster_resolver(),
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=_collective_implementation()))
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as e:
            raise UserError(f"--strategy tpu: no TPU found ({str(e).splitlines()[0]}); "
                            "pass --tpu NAME or use another strategy") from None
        return tf.distribute.TPUStrategy(resolver)
    raise UserError(f"train.strategy: unknown strategy {name!r}")


def _local_devices():
    """All GPUs, else every logical CPU device (two logical CPUs make two replicas)."""
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return [d.name for d in devices]


def _collective_implementation():
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.experimental.CommunicationImplementation.NCCL
    return tf.distribute.experimental.CommunicationImplementation.RING


def _cluster_resolver():
    if os.environ.get("TF_CONFIG"):
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise UserError(f"TF_CONFIG: not valid JSON ({e.msg})") from None
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if os.environ.get("SLURM_JOB_ID"):
        try:
            return tf.distribute.cluster_resolver.SlurmClusterResolver()
        except (RuntimeError, ValueError, KeyError) as e:
            raise UserError(f"Slurm: cannot resolve the cluster ({e})") from None
    raise UserError("--strategy multi_worker: set TF_CONFIG (or run under Slurm) to name the "
                    "workers")


def is_chief(strategy):
    """Whether this process writes checkpoints, summaries and logs for the run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


def worker_index(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return 0
    return resolver.task_id or 0
