"""Multi-worker start-up without TensorFlow: TF_CONFIG checked, each worker's port held, the
peers probed until all answer, whom it waits for logged, a deadline.

Nothing here imports TensorFlow, so TF_CONFIG errors come before TensorFlow starts (and take
no seconds to import it).
"""

import errno
import json
import logging
import os
import select
import socket
import struct
import time

from xlnet.errors import UserError

logger = logging.getLogger(__name__)

# The tasks MultiWorkerMirroredStrategy trains with (it coordinates chief and worker jobs).
TRAINING_JOBS = ("chief", "worker")
# Seconds between two probes of the missing peers, and each probe's connect timeout.
POLL_SECONDS = 0.5
PROBE_TIMEOUT_SECONDS = 1.0


def check_cluster_environment():
    """Checks TF_CONFIG when it is set (the Slurm resolver checks its own environment)."""
    if "TF_CONFIG" in os.environ:
        check_tf_config(os.environ["TF_CONFIG"])


def check_tf_config(text):
    """The training tasks of a TF_CONFIG string as (own task, peers), each task a
    (type, index, "host:port") tuple; raises UserError naming what is wrong and the fix."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"TF_CONFIG: not valid JSON ({e.msg})") from None
    if not isinstance(config, dict) or not config.get("cluster"):
        raise UserError('TF_CONFIG: no "cluster"; list the workers, e.g. '
                        '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                        '"task": {"type": "worker", "index": 0}}')
    cluster = config["cluster"]
    if not isinstance(cluster, dict):
        raise UserError('TF_CONFIG: "cluster" must map job names to lists of "host:port"')
    tasks = []
    for job, addresses in cluster.items():
        if job not in TRAINING_JOBS:
            raise UserError(f'TF_CONFIG: job {job!r} in "cluster": --strategy multi_worker '
                            f'trains with "chief" and "worker" tasks only; remove {job!r}')
        if not isinstance(addresses, list) or not addresses:
            raise UserError(f'TF_CONFIG: cluster.{job} must be a non-empty list of '
                            f'"host:port", got {addresses!r}')
        for index, address in enumerate(addresses):
            _check_address(f"cluster.{job}[{index}]", address)
            tasks.append((job, index, address))
    if len(cluster.get("chief", [])) > 1:
        raise UserError("TF_CONFIG: cluster.chief lists more than one task; keep one chief "
                        "and make the others workers")
    seen = {}
    for job, index, address in tasks:
        if address in seen:
            raise UserError(f"TF_CONFIG: {seen[address]} and {job} {index} both use {address}; "
                            "give every task its own port")
        seen[address] = f"{job} {index}"
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise UserError('TF_CONFIG: no "task" naming this process, e.g. '
                        '"task": {"type": "worker", "index": 0}; give each process its own')
    task_type, task_index = task["type"], task["index"]
    if task_type not in cluster:
        raise UserError(f"TF_CONFIG: task type {task_type!r} is not in the cluster (which has "
                        f"{', '.join(cluster)}); use one of those")
    if isinstance(task_index, bool) or not isinstance(task_index, int) or not (
            0 <= task_index < len(cluster[task_type])):
        raise UserError(f"TF_CONFIG: task index {task_index!r} is out of range: cluster."
                        f"{task_type} lists {len(cluster[task_type])} task(s), so use 0 to "
                        f"{len(cluster[task_type]) - 1}")
    own = (task_type, task_index, cluster[task_type][task_index])
    return own, [t for t in tasks if t != own]


def _check_address(key, address):
    if not isinstance(address, str):
        raise UserError(f'TF_CONFIG: {key} must be "host:port", got {address!r}')
    host, colon, port = address.rpartition(":")
    if not colon or not host:
        raise UserError(f'TF_CONFIG: {key} is {address!r}, which has no port; write '
                        f'"host:port", e.g. "{host or address}:12345"')
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f'TF_CONFIG: {key} is {address!r}, whose port is not a number from '
                        '1 to 65535; write "host:port"')


class PortHolder:
    """Holds this task's port while it waits, so that peers see it up before TensorFlow
    listens there; connections are accepted and reset at once."""

    def __init__(self, own):
        self.own = own

    def __enter__(self):
        host, _, port = self.own[2].rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            try:
                self.socket.bind((host, int(port)))
            except OSError as e:
                if e.errno != errno.EADDRNOTAVAIL and not isinstance(e, socket.gaierror):
                    raise
                # The name is not one of this machine's addresses (a service name, a NAT):
                # TensorFlow listens on every interface, so hold the port there too.
                self.socket.bind(("", int(port)))
        except OSError as e:
            self.socket.close()
            raise UserError(f"TF_CONFIG: port {port} of this task ({self.own[0]} {self.own[1]} "
                            f"at {self.own[2]}) is taken ({e.strerror}); stop the program "
                            "using it or choose another port") from None
        self.socket.listen(64)
        self.socket.setblocking(False)
        return self

    def serve(self, seconds):
        """Accepts and resets the connections that arrive within `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.socket], [], [], left)
            if not ready:
                return
            try:
                connection, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                continue
            # A reset, not a close: no TIME_WAIT left on the port TensorFlow binds next.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  struct.pack("ii", 1, 0))
            connection.close()

    def __exit__(self, *exc):
        self.socket.close()


def wait_for_peers(listener, peers, start, timeout):
    """Returns once every peer answers at its address; logs the missing ones every few
    seconds; raises UserError at the deadline."""
    log_every = min(10.0, max(1.0, timeout / 5))
    next_log = start + min(2.0, log_every)
    missing = list(peers)
    while True:
        missing = [p for p in missing if not _answers(p[2])]
        if not missing:
            return
        now = time.monotonic()
        if now - start >= timeout:
            raise UserError(f"{_names(missing)} did not join within {timeout:g} s; start "
                            "every worker listed in TF_CONFIG (or raise train.cluster_timeout)")
        if now >= next_log:
            logger.info("waiting for %s (%.0f s of %g)", _names(missing), now - start, timeout)
            next_log = now + log_every
        listener.serve(min(POLL_SECONDS, max(0.0, start + timeout - now)))


def _answers(address):
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)),
                                      timeout=PROBE_TIMEOUT_SECONDS):
            return True
    except OSError:
        return False


def _names(tasks):
    return ", ".join(f"{job} {index} at {address}" for job, index, address in tasks)
