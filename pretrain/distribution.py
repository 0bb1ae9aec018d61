"""The tf.distribute strategy named by the config or `--strategy`.

Multi-worker start-up (`multi_worker`) never waits silently. TF_CONFIG is checked before
TensorFlow starts; each worker holds its own port and probes its peers until all answer
(pretrain/cluster.py), logging whom it waits for, giving up after `train.cluster_timeout`
seconds (exit status 2), stopping at once on SIGTERM. Only then is the strategy built:
TensorFlow's rendezvous blocks in C++ holding the interpreter lock (an hour by default for a
missing worker) and installs its own SIGTERM handler (its preemption notifier), so no waiting
is left to it.
"""

import faulthandler
import logging
import os
import signal
import sys
import threading
import time

import tensorflow as tf

from pretrain.cluster import TRAINING_JOBS, PortHolder, check_tf_config, wait_for_peers
from xlnet.errors import UserError

logger = logging.getLogger(__name__)

EXIT_TERMINATED = 143  # 128 + SIGTERM, as the trainer's stop on SIGTERM
# What TensorFlow gets beyond train.cluster_timeout to connect workers that all answered.
BACKSTOP_GRACE_SECONDS = 60.0


def create_strategy(name, tpu=None, cluster_timeout=600.0):
    """Returns the strategy; `multi_worker` reads TF_CONFIG, or the Slurm environment, and
    waits at most `cluster_timeout` seconds for the other workers."""
    if name != "multi_worker" and os.environ.get("TF_CONFIG"):
        logger.warning("TF_CONFIG is set but train.strategy is %s: TF_CONFIG is ignored "
                       "(use --strategy multi_worker to train on its workers)", name)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(_local_devices())
    if name == "multi_worker":
        return _multi_worker_strategy(cluster_timeout)
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
    """TF_CONFIG's resolver, its tasks checked, and the peers to wait for; else Slurm's."""
    if "TF_CONFIG" in os.environ:
        own, peers = check_tf_config(os.environ["TF_CONFIG"])
        return tf.distribute.cluster_resolver.TFConfigClusterResolver(), own, peers
    if os.environ.get("SLURM_JOB_ID"):
        try:
            resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
        except (RuntimeError, ValueError, KeyError) as e:
            raise UserError(f"Slurm: cannot resolve the cluster ({e})") from None
        cluster = resolver.cluster_spec().as_dict()
        own_type, own_index = resolver.task_type, resolver.task_id
        tasks = [(job, index, address) for job in TRAINING_JOBS
                 for index, address in enumerate(cluster.get(job, []))]
        own = next(t for t in tasks if t[:2] == (own_type, own_index))
        return resolver, own, [t for t in tasks if t != own]
    raise UserError("--strategy multi_worker: set TF_CONFIG (or run under Slurm) to name the "
                    "workers")


def _multi_worker_strategy(cluster_timeout):
    resolver, own, peers = _cluster_resolver()
    start = time.monotonic()
    logger.info("%s %d at %s: waiting for %d other worker(s), at most %g s "
                "(train.cluster_timeout)", own[0], own[1], own[2], len(peers), cluster_timeout)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop_waiting) if in_main_thread else None
    try:
        with PortHolder(own) as holder:
            wait_for_peers(holder, peers, start, cluster_timeout)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    # Every worker answered: TensorFlow now starts its server and connects the workers, in C++
    # holding the interpreter lock, so nothing in Python runs until it returns. Should a worker
    # vanish in these seconds, faulthandler's own thread ends the process (status 1).
    backstop = max(0.0, cluster_timeout - (time.monotonic() - start)) + BACKSTOP_GRACE_SECONDS
    logger.info("every worker answers (%.1f s); TensorFlow connects them (exits with status 1 "
                "if that takes over %.0f s)", time.monotonic() - start, backstop)
    faulthandler.dump_traceback_later(backstop, exit=True, file=sys.stderr)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver,
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=_collective_implementation()))
    finally:
        faulthandler.cancel_dump_traceback_later()
    logger.info("all %d workers joined in %.1f s", len(peers) + 1, time.monotonic() - start)
    if in_main_thread:
        # TensorFlow's preemption notifier took SIGTERM as its server started; until the
        # trainer installs its handler (stop after a step and save), SIGTERM ends the start-up.
        signal.signal(signal.SIGTERM, _stop_startup)
    return strategy


def _stop_waiting(signum, frame):
    logger.info("stopped by SIGTERM while waiting for the other workers")
    raise SystemExit(EXIT_TERMINATED)


def _stop_startup(signum, frame):
    logger.info("stopped by SIGTERM during start-up (before training began)")
    raise SystemExit(EXIT_TERMINATED)


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
